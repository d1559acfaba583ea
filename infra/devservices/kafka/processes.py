"""Recognising and ending the broker process by pid, safely across pid reuse."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from infra.devservices.kafka.config import BROKER_MAIN
from infra.devservices.kafka.errors import KafkaLauncherError

if TYPE_CHECKING:
    from collections.abc import Callable

_POLL_SECONDS = 0.1
_KILL_GRACE_SECONDS = 10.0

log = structlog.get_logger(__name__)


def is_broker_process(pid: int, properties: Path) -> bool:
    """True only for a live `kafka.Kafka` JVM started with *this* home's properties.

    A recorded pid may since have been reused by an unrelated program; checking the
    command line keeps us from treating it as our broker (or signalling it).
    """
    args = _command_line(pid)
    return BROKER_MAIN in args and str(properties) in args


def terminate(pid: int, timeout: float, alive: Callable[[], bool]) -> None:
    """SIGTERM lets Kafka close its logs cleanly; SIGKILL only if it will not go in time.

    `alive` is re-checked by the caller's rule (command line, reaping its own child) rather
    than by pid alone, so a pid freed and reused meanwhile is never signalled again.
    """
    _signal(pid, signal.SIGTERM)
    if _wait_gone(alive, timeout):
        return
    log.warning("kafka.kill", pid=pid, after_seconds=timeout)
    _signal(pid, signal.SIGKILL)
    if not _wait_gone(alive, _KILL_GRACE_SECONDS):
        msg = f"the Kafka broker (pid {pid}) survived SIGKILL; end it by hand"
        raise KafkaLauncherError(msg)


def _wait_gone(alive: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _command_line(pid: int) -> list[str]:
    proc = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():
        try:
            # A zombie (dead, not yet reaped) has an empty command line: it counts as dead.
            return [arg for arg in proc.read_bytes().decode(errors="replace").split("\0") if arg]
        except OSError:
            return []
    # No procfs (macOS): ask ps, which prints nothing for a pid that does not exist.
    result = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return result.stdout.split()
