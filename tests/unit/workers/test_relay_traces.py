"""The relay puts an Operation's trace on every record it publishes for it (issue 20): read
from the Operation's `Requested` event as it passes, else from the store, once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from infra.bus import Delivery
from infra.bus.memory import InProcessBus
from infra.bus.outbox import TRANSACTION_HEADER
from infra.bus.topic_names import DEFAULT as TOPICS
from infra.eventstore.notification_log import LogPosition, StoredNotification
from infra.tracing import CORRELATION_HEADER, TRACEPARENT_HEADER
from tests.unit.workers.test_relay import Log, MemoryPositions
from workers.relay import OutboxRelay

OPERATION = uuid4()
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE = {CORRELATION_HEADER: "req-5", TRACEPARENT_HEADER: TRACEPARENT}


def notification(position: int, topic: str, aggregate: UUID, **data: Any) -> StoredNotification:
    return StoredNotification(
        position, topic, aggregate, 1, {"timestamp": datetime.now(UTC), **data}
    )


def operation_log(**requested: Any) -> Log:
    """An Operation requested (with `requested` among its fields), its one chunk planned,
    and a Trader's hold for it."""
    log = Log(0)
    log.items = [
        notification(1, "domain.operation:Operation.Requested", OPERATION, **requested),
        notification(
            2, "domain.chunk:OperationChunk.Planned", uuid4(), operation_id=str(OPERATION), index=0
        ),
        notification(3, "domain.trader:Trader.HoldPlaced", uuid4(), operation_id=str(OPERATION)),
    ]
    return log


async def relayed(relay: OutboxRelay, *topics: str) -> dict[str, list[Delivery]]:
    """What the relay's next batch published, by topic."""
    bus = relay.bus
    assert isinstance(bus, InProcessBus)
    seen: dict[str, list[Delivery]] = {topic: [] for topic in topics}
    for topic in topics:

        async def take(delivery: Delivery, into: list[Delivery] = seen[topic]) -> None:
            into.append(delivery)

        bus.subscribe(topic, f"g-{topic}", take)
    await bus.start()
    await relay.run_once()
    for _ in range(200):
        if bus.idle():
            break
        await asyncio.sleep(0.01)
    await bus.stop()
    return seen


def traced(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k in (CORRELATION_HEADER, TRACEPARENT_HEADER)}


async def test_every_record_of_the_operation_carries_its_trace() -> None:
    log = operation_log(correlation_id="req-5", traceparent=TRACEPARENT)
    relay = OutboxRelay(log, InProcessBus(partitions=2), MemoryPositions())
    seen = await relayed(relay, TOPICS.events, TOPICS.credit_check)
    assert [traced(d.headers) for d in seen[TOPICS.events]] == [TRACE] * 3
    assert all(TRANSACTION_HEADER in d.headers for d in seen[TOPICS.events])
    (task,) = seen[TOPICS.credit_check]
    assert dict(task.headers) == TRACE


async def test_without_event_readers_the_tasks_still_carry_it() -> None:
    log = operation_log(correlation_id="req-5", traceparent=TRACEPARENT)
    relay = OutboxRelay(log, InProcessBus(partitions=2), MemoryPositions(), publish_events=False)
    seen = await relayed(relay, TOPICS.credit_check)
    (task,) = seen[TOPICS.credit_check]
    assert dict(task.headers) == TRACE


async def test_a_relay_resuming_mid_operation_reads_its_trace_from_the_store_once() -> None:
    log = operation_log(correlation_id="req-5", traceparent=TRACEPARENT)
    asked: list[UUID] = []

    def first_state(aggregate_id: UUID) -> Mapping[str, Any] | None:
        asked.append(aggregate_id)
        return log.items[0].state if aggregate_id == OPERATION else None

    positions = MemoryPositions()
    positions.positions["outbox"] = LogPosition(0, 1)  # Requested published before a restart
    relay = OutboxRelay(log, InProcessBus(partitions=2), positions, traces=first_state)
    await relay.resume()
    seen = await relayed(relay, TOPICS.events, TOPICS.credit_check)
    assert [traced(d.headers) for d in seen[TOPICS.events]] == [TRACE] * 2
    assert dict(seen[TOPICS.credit_check][0].headers) == TRACE
    assert asked == [OPERATION]


async def test_an_operation_requested_untraced_gets_no_trace_headers() -> None:
    relay = OutboxRelay(operation_log(), InProcessBus(partitions=2), MemoryPositions())
    seen = await relayed(relay, TOPICS.events, TOPICS.credit_check)
    assert [traced(d.headers) for d in seen[TOPICS.events]] == [{}] * 3
    assert dict(seen[TOPICS.credit_check][0].headers) == {}
