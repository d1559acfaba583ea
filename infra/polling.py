"""The loop of a process that tails something (the relay, the log follower): poll, pause when
idle, back off while failing, stop when told."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

#: The longest pause between attempts while a step keeps failing.
MAX_BACKOFF = 5.0


async def poll_until(
    stop: asyncio.Event,
    step: Callable[[], Awaitable[int]],
    *,
    idle_delay: float,
    failed: Callable[[], None],
    idle: Callable[[], Awaitable[None]] | None = None,
    max_backoff: float = MAX_BACKOFF,
) -> None:
    """Run `step` until `stop` is set: again at once while it finds work (returns more than
    0), after `idle_delay` when it finds none (`idle` runs first), and after a pause that
    doubles up to `max_backoff` while it (or `idle`) raises. `failed` is called inside the
    handler, so it can log the traceback; the same step is then simply tried again."""
    delay = idle_delay
    while not stop.is_set():
        try:
            found = await step()
            if not found and idle is not None:
                await idle()
            delay = idle_delay
        except Exception:
            failed()
            found, delay = 0, min(max(delay * 2, 0.1), max_backoff)
        if not found:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
