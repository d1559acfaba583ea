"""Inter-process locks, so parallel test sessions or a CLI call never race on one folder."""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from infra.devservices.kafka.errors import KafkaLauncherError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_POLL_SECONDS = 0.1


@contextmanager
def file_lock(path: Path, timeout: float, purpose: str) -> Iterator[None]:
    """Hold an exclusive flock on `path`; give up with a clear error instead of waiting forever.

    flock is released by the kernel when the holder dies, so a crashed launcher never leaves
    a lock behind that would need cleaning up by hand.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with path.open("a+b") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    msg = (
                        f"another process has held {path} for {timeout:.0f}s while {purpose}; "
                        "wait for it to finish or end it"
                    )
                    raise KafkaLauncherError(msg) from None
                time.sleep(_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
