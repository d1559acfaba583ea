"""How a process starts another `strategies` process (the bench's workers, embedded mode's
read models): one command line and one working directory for every such child."""

from __future__ import annotations

import sys
from pathlib import Path

#: The repository root, the children's working directory. `python -m infra.cli` finds the
#: package from there; started inside `infra/`, a child imported `infra/logging.py` as the
#: standard library's `logging` and died at once (how the Kafka bench broke).
ROOT = Path(__file__).resolve().parents[2]


def strategies_command(*args: str) -> list[str]:
    """`strategies <args>` run by this interpreter (the installed script may be off PATH)."""
    return [sys.executable, "-m", "infra.cli", *args]
