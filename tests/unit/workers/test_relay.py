"""The outbox relay over a bus that keeps nothing across restarts (embedded mode)."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from uuid import uuid4

from infra.bus import Delivery
from infra.bus.memory import InProcessBus
from infra.bus.topic_names import DEFAULT as TOPICS
from infra.eventstore.notification_log import START, LogPosition, StoredNotification, kind_of
from workers.relay import OutboxRelay

AGGREGATE = uuid4()


class MemoryPositions:
    """The relay's saved positions, in memory (the Engine's are a PostgreSQL table)."""

    def __init__(self) -> None:
        self.positions: dict[str, LogPosition] = {}

    async def load(self, name: str) -> LogPosition:
        return self.positions.get(name, START)

    async def save(self, name: str, position: LogPosition) -> None:
        self.positions[name] = position


class Log:
    def __init__(self, size: int) -> None:
        self.items = [
            StoredNotification(
                i,
                "domain.trader:Trader.AutoRebalanceChanged",
                AGGREGATE,
                i,
                {"timestamp": datetime.now(UTC), "auto_rebalance": True},
            )
            for i in range(1, size + 1)
        ]

    def read(
        self, after: LogPosition, limit: int, *, kinds: Collection[str] | None = None
    ) -> Sequence[StoredNotification]:
        found = [n for n in self.items if n.at > after][:limit]
        if kinds is None:
            return found
        return [
            n if kind_of(n.topic) in kinds else replace(n, state={})
            for n in found
            if kind_of(n.topic) in kinds or n is found[-1]
        ]


async def test_the_position_is_saved_only_once_every_record_was_handled() -> None:
    bus = InProcessBus(partitions=2)
    release = asyncio.Event()
    handled: list[int] = []

    async def slow(delivery: Delivery) -> None:
        await release.wait()
        handled.append(delivery.offset)

    bus.subscribe(TOPICS.events, "slow", slow)
    await bus.start()
    positions = MemoryPositions()
    relay = OutboxRelay(Log(5), bus, positions, delivered=bus.idle)
    assert await relay.run_once() == 5
    assert await positions.load("outbox") == START  # published, but not handled yet
    release.set()
    for _ in range(100):
        if bus.idle():
            break
        await asyncio.sleep(0.01)
    await relay.save_if_durable()
    assert await positions.load("outbox") == LogPosition(0, 5)
    await bus.stop()


async def test_a_durable_bus_saves_the_position_right_after_publishing() -> None:
    bus = InProcessBus(partitions=2)
    await bus.start()
    positions = MemoryPositions()
    relay = OutboxRelay(Log(3), bus, positions)
    await relay.run_once()
    assert await positions.load("outbox") == LogPosition(0, 3)
    await bus.stop()


async def test_without_event_readers_only_the_stage_tasks_are_published() -> None:
    bus = InProcessBus(partitions=2)
    tasks: list[Delivery] = []
    taken = asyncio.Event()

    async def take(delivery: Delivery) -> None:
        tasks.append(delivery)
        taken.set()

    bus.subscribe(TOPICS.credit_check, "check", take)
    await bus.start()
    log = Log(3)
    planned = StoredNotification(
        4,
        "domain.chunk:OperationChunk.Planned",
        AGGREGATE,
        1,
        {"timestamp": datetime.now(UTC), "operation_id": str(AGGREGATE), "index": 0},
    )
    log.items.append(planned)
    relay = OutboxRelay(log, bus, MemoryPositions(), publish_events=False)
    assert await relay.run_once() == 1  # the Traders' three events were not even read
    await asyncio.wait_for(taken.wait(), 5)
    await bus.stop()
    assert relay.position == LogPosition(0, 4)
    assert [d.key for d in tasks] == [f"{AGGREGATE}:0"]
    assert bus.retained(TOPICS.events) == 0
