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

Every record of an Operation (its events, its chunks' and Traders' events, its stage tasks)
carries the trace of the request that made it (`infra.tracing`): read from its `Requested`
event as the relay passes it, else (a relay that resumed mid-Operation) from the store, once
per Operation, through `traces`; the last `TRACE_CACHE` Operations' are remembered.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

import structlog

from infra.bus import Bus, Record
from infra.bus.messages import DomainEventMessage
from infra.bus.outbox import (
    TASK_EVENTS,
    TRACED_EVENT,
    event_message,
    operation_of,
    recorded_trace,
    records_for,
)
from infra.bus.topic_names import DEFAULT, Topics
from infra.cpu_meter import CPU
from infra.eventstore.notification_log import (
    START,
    LogPosition,
    NotificationLog,
    StoredNotification,
    kind_of,
)
from infra.polling import poll_until

log = structlog.get_logger("workers.relay")

#: Operations whose trace headers the relay remembers: a few stay in flight at once.
TRACE_CACHE = 10_000
#: What a relay that publishes no events reads: the task events, and the Operations'
#: `Requested` for their traces.
_TASK_READS = TASK_EVENTS | {TRACED_EVENT}
#: An Operation's `Requested` state from the store (None: no such Operation).
TraceSource = Callable[[UUID], Mapping[str, Any] | None]


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
        traces: TraceSource | None = None,
    ) -> None:
        """`delivered`: for a bus that does not keep records (the in-process one), whether
        everything published has been handled; the position is saved only then.
        `publish_events`: False when nobody reads the events topic (embedded mode, whose
        read models follow the log): only the stage tasks are published.
        `traces`: where an Operation's trace is found when its `Requested` event was
        published before this relay started (without it, such records go untraced)."""
        self.traces = traces
        self._trace_headers: OrderedDict[str, dict[str, str]] = OrderedDict()
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
        messages = [
            (stored, self._message(stored))
            for stored in batch
            if self.publish_events or kind_of(stored.topic) in _TASK_READS
        ]
        await self._learn_traces([message for _, message in messages])
        records: list[Record] = []
        for stored, message in messages:
            operation = operation_of(message)
            records.extend(
                records_for(
                    message,
                    self.topics,
                    transaction=stored.transaction,
                    events=self.publish_events,
                    trace=None if operation is None else self._trace_headers.get(operation),
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
            return self.notifications.read(self.position, self.batch_size, kinds=_TASK_READS)

    @staticmethod
    def _message(stored: StoredNotification) -> DomainEventMessage:
        return event_message(
            stored.position,
            stored.topic,
            stored.aggregate_id,
            stored.version,
            stored.state,
            already_plain=stored.plain,
        )

    async def _learn_traces(self, messages: Sequence[DomainEventMessage]) -> None:
        """Remember the trace of every Operation of the batch: from its `Requested` when
        the batch holds it, else from the store (one read per Operation not remembered)."""
        unknown: set[str] = set()
        for message in messages:
            operation = operation_of(message)
            if operation is None:
                continue
            if message.type == TRACED_EVENT:
                self._remember(operation, recorded_trace(message.data))
            elif operation in self._trace_headers:
                self._trace_headers.move_to_end(operation)
            else:
                unknown.add(operation)
        if unknown and self.traces is not None:
            for operation, headers in (await asyncio.to_thread(self._stored, unknown)).items():
                self._remember(operation, headers)

    def _stored(self, operations: Collection[str]) -> dict[str, dict[str, str]]:
        assert self.traces is not None
        found = {}
        for operation in operations:
            try:
                state = self.traces(UUID(operation))
            except ValueError:  # a Trader's `operation_id` is always one; this is no UUID
                state = None
            found[operation] = recorded_trace(state or {})
        return found

    def _remember(self, operation: str, headers: dict[str, str]) -> None:
        self._trace_headers[operation] = headers
        self._trace_headers.move_to_end(operation)
        while len(self._trace_headers) > TRACE_CACHE:
            self._trace_headers.popitem(last=False)

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
