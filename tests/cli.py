"""`strategies ...` run the way an operator runs it: `python -m infra.cli` in a child process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(
    env: Mapping[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one command to its end; the caller checks the exit code and the output."""
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_cli(env: Mapping[str, str], out: Path, *args: str) -> subprocess.Popen[str]:
    """Start one command in the background, its stdout and stderr into `out` + .out/.err
    (files, not pipes: a long output must never block the command on a full pipe)."""
    with (
        out.with_suffix(".out").open("w") as stdout,
        out.with_suffix(".err").open("w") as stderr,
    ):
        return subprocess.Popen(
            [sys.executable, "-m", "infra.cli", *args],
            cwd=ROOT,
            env=dict(env),
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
