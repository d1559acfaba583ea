"""The first SIGTERM/SIGINT of a command's process as a normal exit (0), from its first line.

An orchestrator may stop a process at any moment, start-up included (a schema check, an
embedded server starting): without this the default action kills it (exit -15) before any
clean-up runs. A worker's event loop takes the signals over once it runs, to drain.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from infra.logging import get_logger

log = get_logger("infra.cli")


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGTERM/SIGINT into a normal exit, so context managers clean up.

    uvicorn handles the signal while it serves, then re-raises it once it has shut down;
    without our handler the default action would kill the process before the embedded
    server is stopped. Later signals are ignored so that clean-up is not cut short.
    """

    def exit_cleanly(signum: int, _frame: FrameType | None) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _ignore)
        log.info("process.terminating", signal=signal.Signals(signum).name)
        raise SystemExit(0)

    previous = {sig: signal.signal(sig, exit_cleanly) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(signum: int, _frame: FrameType | None) -> None:
    log.warning("process.signal_ignored_during_shutdown", signal=signal.Signals(signum).name)
