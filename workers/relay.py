"""The outbox relay: tails the event store's notification log and publishes it to Kafka.

It is the only way anything leaves the write side. It reads committed events in log order,
publishes each (and the stage tasks it makes due), waits for every acknowledgement, and only
then advances its durable position. A crash between publishing and saving the position
republishes a few records on restart: consumers are idempotent, so delivery is at least once
and effects exactly once, and per-key order is preserved because the log is read in order.

Log order is (writing transaction, notification id) (`infra.eventstore.notification_log`), so
the position is that pair, and notification ids are not monotonic in publish order: each event
record carries its transaction in a header (`infra.bus.outbox.TRANSACTION_HEADER`), which with
the event's position gives consumers a key that is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from infra.bus import Bus, Record
from infra.bus.outbox import TASK_EVENTS, event_message, may_make_tasks, records_for
from infra.bus.topic_names import DEFAULT, Topics
from infra.cpu_meter import CPU
from infra.eventstore.notification_log import (
    START,
    LogPosition,
    NotificationLog,
    StoredNotification,
)
from infra.polling import poll_until

log = structlog.get_logger("workers.relay")


class PositionStore(Protocol):
    async def load(self, name: str) -> LogPosition: ...

    async def save(self, name: str, position: LogPosition) -> None: ...


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
        on_published: Callable[[LogPosition], None] | None = None,
        topics: Topics = DEFAULT,
        delivered: Callable[[], bool] | None = None,
        publish_events: bool = True,
    ) -> None:
        """`delivered`: for a bus that does not keep records (the in-process one), whether
        everything published has been handled; the position is saved only then.
        `publish_events`: False when nobody reads the events topic (embedded mode, whose
        read models follow the log): only the stage tasks are published."""
        self.delivered = delivered
        self.publish_events = publish_events
        self._saved = START
        self.topics = topics
        self.notifications = notifications
        self.bus = bus
        self.positions = positions
        self.name = name
        self.batch_size = batch_size
        self.idle_delay = idle_delay
        self.on_published = on_published
        self.position = START

    async def run_once(self) -> int:
        """Publish the next batch; returns how many events it read (0: nothing new)."""
        batch = await asyncio.to_thread(self._read)
        if not batch:
            return 0
        records: list[Record] = []
        for stored in batch:
            if not self.publish_events and not may_make_tasks(stored.topic):
                continue
            message = event_message(
                stored.position,
                stored.topic,
                stored.aggregate_id,
                stored.version,
                stored.state,
                already_plain=stored.plain,
            )
            records.extend(
                records_for(
                    message,
                    self.topics,
                    transaction=stored.transaction,
                    events=self.publish_events,
                )
            )
        await self.bus.publish_many(records)
        self.position = batch[-1].at
        await self.save_if_durable()
        if self.on_published:
            self.on_published(self.position)
        log.debug(
            "relay.published", events=len(batch), records=len(records), position=self.position
        )
        return len(batch)

    def _read(self) -> Sequence[StoredNotification]:
        with CPU.measure("relay"):
            if self.publish_events:
                return self.notifications.read(self.position, self.batch_size)
            # Only the events that can make a task cross the wire (and the batch's last one,
            # which moves the position past the rest): the Traders' are most of the log.
            return self.notifications.read(self.position, self.batch_size, kinds=TASK_EVENTS)

    async def save_if_durable(self) -> None:
        if self.position > self._saved and (self.delivered is None or self.delivered()):
            await self.positions.save(self.name, self.position)
            self._saved = self.position

    async def resume(self) -> None:
        """Start from the saved position."""
        self.position = self._saved = await self.positions.load(self.name)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; transient failures are logged and retried."""
        await self.resume()
        log.info("relay.started", position=self.position)
        await poll_until(
            stop,
            self.run_once,
            idle_delay=self.idle_delay,
            failed=lambda: log.exception("relay.failed", position=self.position),
            idle=self.save_if_durable,
        )
        await self.save_if_durable()
        log.info("relay.stopped", position=self.position, saved=self._saved)
