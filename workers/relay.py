"""The outbox relay: tails the event store's notification log and publishes it to Kafka.

It is the only way anything leaves the write side. It reads committed events in log order,
publishes each (and the stage tasks it makes due), waits for every acknowledgement, and only
then advances its durable position. A crash between publishing and saving the position
republishes a few records on restart: consumers are idempotent, so delivery is at least once
and effects exactly once, and per-key order is preserved because the log is read in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

import structlog

from infra.bus import Bus, Record
from infra.bus.outbox import event_message, records_for
from infra.bus.topic_names import DEFAULT, Topics
from infra.eventstore.notification_log import NotificationLog

log = structlog.get_logger("workers.relay")


class PositionStore(Protocol):
    async def load(self, name: str) -> int: ...

    async def save(self, name: str, position: int) -> None: ...


class OutboxRelay:
    def __init__(
        self,
        notifications: NotificationLog,
        bus: Bus,
        positions: PositionStore,
        *,
        name: str = "outbox",
        batch_size: int = 1000,
        idle_delay: float = 0.05,
        on_published: Callable[[int], None] | None = None,
        topics: Topics = DEFAULT,
        delivered: Callable[[], bool] | None = None,
    ) -> None:
        """`delivered`: for a bus that does not keep records (the in-process one), whether
        everything published has been handled; the position is saved only then."""
        self.delivered = delivered
        self._saved = 0
        self.topics = topics
        self.notifications = notifications
        self.bus = bus
        self.positions = positions
        self.name = name
        self.batch_size = batch_size
        self.idle_delay = idle_delay
        self.on_published = on_published
        self.position = 0

    async def run_once(self) -> int:
        """Publish the next batch; returns how many events it published."""
        batch = await asyncio.to_thread(self.notifications.read, self.position, self.batch_size)
        if not batch:
            return 0
        records: list[Record] = []
        for stored in batch:
            message = event_message(
                stored.position, stored.topic, stored.aggregate_id, stored.version, stored.state
            )
            records.extend(records_for(message, self.topics))
        await self.bus.publish_many(records)
        self.position = batch[-1].position
        await self.save_if_durable()
        if self.on_published:
            self.on_published(self.position)
        log.debug(
            "relay.published", events=len(batch), records=len(records), position=self.position
        )
        return len(batch)

    async def save_if_durable(self) -> None:
        if self.position > self._saved and (self.delivered is None or self.delivered()):
            await self.positions.save(self.name, self.position)
            self._saved = self.position

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; transient failures are logged and retried."""
        self.position = self._saved = await self.positions.load(self.name)
        log.info("relay.started", position=self.position)
        delay = self.idle_delay
        while not stop.is_set():
            try:
                published = await self.run_once()
                delay = self.idle_delay
            except Exception:
                log.exception("relay.failed", position=self.position)
                published, delay = 0, min(delay * 2 if delay else 0.1, 5.0)
            if not published:
                await self.save_if_durable()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        await self.save_if_durable()
        log.info("relay.stopped", position=self.position, saved=self._saved)
