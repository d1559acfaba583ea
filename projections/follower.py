"""Embedded mode's read models, fed from the event store's log instead of the bus.

The in-process bus lives and dies with its process, so a consumer of its events topic must
run in that process too, on the same interpreter lock as the stages it would rather not slow
down. Read from the log instead, the read models can be written by a process of their own
(`strategies projections follow`, started by embedded mode) or by a task of the engine.

The follower reads committed events in log order (`infra.eventstore.notification_log`, the
order the relay publishes in), applies a batch and records how far it got in ONE transaction
(`ProjectionWriter.apply_logged`), so a crash or a second follower can neither lose nor
double an event. Nothing is held in memory between batches: a follower behind the writers
reads the store at its own pace, where a bus consumer's backlog would grow in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from infra.bus.outbox import event_message
from infra.eventstore.notification_log import (
    START,
    LogPosition,
    NotificationLog,
    StoredNotification,
)
from infra.polling import MAX_BACKOFF, poll_until

if TYPE_CHECKING:
    from projections.writer import ProjectionWriter

log = structlog.get_logger("projections.follower")

BATCH_SIZE = 1000
IDLE_DELAY = 0.05


class LogFollower:
    def __init__(
        self,
        writer: ProjectionWriter,
        notifications: NotificationLog,
        *,
        batch_size: int = BATCH_SIZE,
        idle_delay: float = IDLE_DELAY,
        on_applied: Callable[[LogPosition], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.writer = writer
        self.notifications = notifications
        self.batch_size = batch_size
        self.idle_delay = idle_delay
        self.on_applied = on_applied
        #: How far the read models are known to be applied (read back on `resume`).
        self.position = START
        #: The next batch being read while the last one is written: (read after, reading).
        self._ahead: tuple[LogPosition, asyncio.Future[Sequence[StoredNotification]]] | None = None

    async def resume(self) -> None:
        self._discard_ahead()
        self.position = await self.writer.log_position()

    async def run_once(self) -> int:
        """Apply the next batch of the log; returns how many events it read.

        While a batch is written, the one after it is already being read (from where this
        one ends): the two wait on PostgreSQL side by side instead of in turn. A read ahead
        is used only if the position it was read from is still where the read models are
        (a failed write leaves them behind it: the batch is read again)."""
        batch = await self._take_ahead()
        if batch is None:
            batch = await self._read(self.position)
        if not batch:
            return 0
        self._ahead = (batch[-1].at, asyncio.ensure_future(self._read(batch[-1].at)))
        items = [
            (
                event_message(
                    n.position,
                    n.topic,
                    n.aggregate_id,
                    n.version,
                    n.state,
                    already_plain=n.plain,
                ),
                n.at,
            )
            for n in batch
        ]
        self.position = await self.writer.apply_logged(items)
        if self.on_applied:
            self.on_applied(self.position)
        return len(batch)

    async def _read(self, after: LogPosition) -> Sequence[StoredNotification]:
        return await asyncio.to_thread(self.notifications.read, after, self.batch_size)

    async def _take_ahead(self) -> Sequence[StoredNotification] | None:
        """The batch read ahead, if it starts where the read models are and was read."""
        if self._ahead is None:
            return None
        after, reading = self._ahead
        if after != self.position:
            self._discard_ahead()
            return None
        self._ahead = None
        try:
            return await reading
        except Exception:
            log.warning("projections.read_ahead_failed", position=self.position, exc_info=True)
            return None

    def _discard_ahead(self) -> None:
        if self._ahead is None:
            return
        reading, self._ahead = self._ahead[1], None
        if not reading.cancel() and not reading.cancelled():
            reading.exception()  # done: a failed read ahead is not worth a warning at exit

    async def run(self, stop: asyncio.Event, *, started: Callable[[], None] | None = None) -> None:
        """Follow until `stop` is set; a failure (store or read models unreachable, a bug) is
        logged and the same batch tried again after a growing pause. `started` is called
        once the position is read back, before the first batch."""
        await self._resume(stop)
        log.info("projections.following", position=self.position)
        if started is not None and not stop.is_set():
            started()
        await poll_until(
            stop,
            self.run_once,
            idle_delay=self.idle_delay,
            failed=lambda: log.exception("projections.follow_failed", position=self.position),
        )
        self._discard_ahead()
        log.info("projections.stopped_following", position=self.position)

    async def _resume(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            try:
                await self.resume()
                return
            except Exception:
                log.exception("projections.resume_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, MAX_BACKOFF)
