"""The launcher's single failure type, so callers catch one thing and show its message."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

TAIL_LINES = 40
# Maven colours its output even with -B and style.color=never on some versions.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class KafkaLauncherError(RuntimeError):
    """Raised when the local broker cannot be prepared, started, reached or stopped.

    The message is written for a person: what failed, what to install or remove, and the
    tail of the relevant tool or broker output.
    """


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last lines of a tool's output: where Maven and Kafka put the actual cause."""
    return "\n".join(_ANSI.sub("", text).rstrip().splitlines()[-lines:])


def file_tail(log: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log at {log})"
    return tail(text, lines) or f"({log} is empty)"
