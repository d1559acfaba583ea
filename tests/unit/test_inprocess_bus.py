"""The in-process bus keeps Kafka's promises: per-key order, groups, retries, graceful stop."""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from infra.bus import Delivery, Record
from infra.bus.memory import InProcessBus, partition_for

WAIT = 5.0
TOPIC = "test.things-happened"


class Collector:
    """A handler that records what it was given and tells when it has seen `expected`."""

    def __init__(
        self, expected: int, before: Callable[[Delivery], Awaitable[object]] | None = None
    ) -> None:
        self.expected = expected
        self.before = before
        self.deliveries: list[Delivery] = []
        self.enough = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        if self.before is not None:
            await self.before(delivery)
        self.deliveries.append(delivery)
        if len(self.deliveries) >= self.expected:
            self.enough.set()

    async def wait(self) -> None:
        await asyncio.wait_for(self.enough.wait(), WAIT)

    def values_by_key(self) -> dict[str | None, list[bytes]]:
        seen: dict[str | None, list[bytes]] = defaultdict(list)
        for delivery in self.deliveries:
            seen[delivery.key].append(delivery.value)
        return dict(seen)


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(partitions=4, retry_initial=0.01, retry_max=0.05, graceful_timeout=WAIT)
    yield bus
    await bus.stop()


def keyed(count: int, keys: int) -> list[Record]:
    return [
        Record(TOPIC, f"{n // keys}".encode(), key=f"trader-{n % keys}", headers={"n": str(n)})
        for n in range(count)
    ]


def expected_by_key(count: int, keys: int) -> dict[str | None, list[bytes]]:
    expected: dict[str | None, list[bytes]] = defaultdict(list)
    for record in keyed(count, keys):
        expected[record.key].append(record.value)
    return dict(expected)


async def test_records_of_one_key_arrive_once_and_in_publish_order(bus: InProcessBus) -> None:
    async def jitter(delivery: Delivery) -> None:
        # Uneven handler times interleave the partitions; order must hold within each key.
        await asyncio.sleep(0.001 * (delivery.offset % 3))

    collector = Collector(400, before=jitter)
    bus.subscribe(TOPIC, "projector", collector)
    await bus.start()
    await bus.publish_many(keyed(400, keys=10))
    await collector.wait()
    await asyncio.sleep(0.05)  # nothing more may come

    assert collector.values_by_key() == expected_by_key(400, keys=10)
    assert len(collector.deliveries) == 400
    assert {d.headers["n"] for d in collector.deliveries} == {str(n) for n in range(400)}


async def test_every_group_receives_every_record(bus: InProcessBus) -> None:
    projections, webhooks = Collector(100), Collector(100)
    bus.subscribe(TOPIC, "projections", projections)
    bus.subscribe(TOPIC, "webhooks", webhooks)
    await bus.start()
    await bus.publish_many(keyed(100, keys=7))
    await projections.wait()
    await webhooks.wait()

    assert projections.values_by_key() == webhooks.values_by_key() == expected_by_key(100, 7)


async def test_a_failing_record_is_retried_after_a_backoff_and_later_ones_wait(
    bus: InProcessBus,
) -> None:
    failures_left = 2
    calls: list[tuple[bytes, int]] = []

    async def fail_twice_on_first(delivery: Delivery) -> None:
        nonlocal failures_left
        calls.append((delivery.value, delivery.redelivered))
        if delivery.value == b"first" and failures_left:
            failures_left -= 1
            raise RuntimeError("the venue is down")

    collector = Collector(3, before=fail_twice_on_first)
    bus.subscribe(TOPIC, "execution", collector)
    await bus.start()
    await bus.publish_many([Record(TOPIC, v, key="op-1") for v in (b"first", b"second", b"third")])
    await collector.wait()

    assert calls == [(b"first", 0), (b"first", 1), (b"first", 2), (b"second", 0), (b"third", 0)]
    assert [d.value for d in collector.deliveries] == [b"first", b"second", b"third"]
    assert [d.redelivered for d in collector.deliveries] == [2, 0, 0]


async def test_a_stuck_partition_does_not_hold_up_the_others(bus: InProcessBus) -> None:
    stuck_key = "op-stuck"
    stuck_partition = partition_for(stuck_key, bus.partitions)
    other_keys = [f"op-{n}" for n in range(40) if partition_for(f"op-{n}", 4) != stuck_partition]

    async def always_fail_stuck(delivery: Delivery) -> None:
        if delivery.key == stuck_key:
            raise RuntimeError("poison")

    collector = Collector(len(other_keys), before=always_fail_stuck)
    bus.subscribe(TOPIC, "execution", collector)
    await bus.start()
    await bus.publish_many([Record(TOPIC, b"x", key=stuck_key)])
    await bus.publish_many([Record(TOPIC, b"y", key=key) for key in other_keys])
    await collector.wait()

    assert sorted(d.key for d in collector.deliveries if d.key) == sorted(other_keys)


async def test_records_published_before_a_group_subscribed_are_delivered_to_it(
    bus: InProcessBus,
) -> None:
    await bus.publish_many(keyed(20, keys=3))  # before subscribe and before start
    collector = Collector(20)
    bus.subscribe(TOPIC, "late-group", collector)
    await bus.start()
    await collector.wait()

    assert len(collector.deliveries) == 20


async def test_stop_lets_an_in_flight_handler_finish_and_commits_it(bus: InProcessBus) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[bytes] = []

    async def slow(delivery: Delivery) -> None:
        started.set()
        await release.wait()
        await asyncio.sleep(0.05)
        finished.append(delivery.value)

    bus.subscribe(TOPIC, "pricing", slow)
    await bus.start()
    await bus.publish(Record(TOPIC, b"quote", key="op-1"))
    await asyncio.wait_for(started.wait(), WAIT)
    stopping = asyncio.create_task(bus.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()  # waits for the handler
    release.set()
    await asyncio.wait_for(stopping, WAIT)
    assert finished == [b"quote"]

    # Restarted, the group resumes after the committed record: nothing comes twice.
    await bus.start()
    await bus.publish(Record(TOPIC, b"next", key="op-1"))
    await asyncio.wait_for(_until(lambda: len(finished) == 2), WAIT)
    assert finished == [b"quote", b"next"]


async def test_a_record_whose_retry_was_interrupted_by_stop_comes_back_after_restart() -> None:
    attempts: list[int] = []

    async def fail_until_restart(delivery: Delivery) -> None:
        attempts.append(delivery.redelivered)
        if len(attempts) == 1:
            raise RuntimeError("fails once, then the process stops during the back-off")

    bus = InProcessBus(partitions=2, retry_initial=10.0, retry_max=10.0)
    bus.subscribe(TOPIC, "settlement", fail_until_restart)
    await bus.start()
    await bus.publish(Record(TOPIC, b"fill", key="op-1"))
    await asyncio.wait_for(_until(lambda: len(attempts) == 1), WAIT)
    await asyncio.wait_for(bus.stop(), WAIT)  # the 10 s back-off does not delay stop
    await bus.start()
    await asyncio.wait_for(_until(lambda: len(attempts) == 2), WAIT)
    await bus.stop()

    assert attempts == [0, 0]  # a new run counts redeliveries afresh, like a new consumer


async def test_a_key_always_lands_on_the_same_partition() -> None:
    # crc32, not hash(): the same in every process and every run.
    assert partition_for("trader-42", 8) == zlib.crc32(b"trader-42") % 8 == 1
    assert {partition_for("trader-42", 8) for _ in range(10)} == {1}

    bus = InProcessBus(partitions=8)
    collector = Collector(30)
    bus.subscribe(TOPIC, "projector", collector)
    await bus.start()
    await bus.publish_many(keyed(30, keys=5))
    await collector.wait()
    await bus.stop()

    assert all(d.partition == partition_for(d.key or "", 8) for d in collector.deliveries)
    offsets = defaultdict(list)
    for d in collector.deliveries:
        offsets[d.partition].append(d.offset)
    assert all(seq == list(range(len(seq))) for seq in offsets.values())


async def test_keyless_records_are_spread_over_the_partitions(bus: InProcessBus) -> None:
    collector = Collector(8)
    bus.subscribe(TOPIC, "projector", collector)
    await bus.start()
    await bus.publish_many([Record(TOPIC, b"no key") for _ in range(8)])
    await collector.wait()

    assert sorted(d.partition for d in collector.deliveries) == [0, 0, 1, 1, 2, 2, 3, 3]


async def test_records_every_group_committed_are_dropped_and_the_rest_kept() -> None:
    bus = InProcessBus(partitions=1)
    fast, slow_release = Collector(3000), asyncio.Event()
    held_back = Collector(3000, before=lambda _: slow_release.wait())
    bus.subscribe(TOPIC, "fast", fast)
    bus.subscribe(TOPIC, "held-back", held_back)
    await bus.start()
    await bus.publish_many(keyed(3000, keys=1))
    await fast.wait()
    assert bus.retained(TOPIC) == 3000  # the held-back group has committed nothing yet

    slow_release.set()
    await held_back.wait()
    await bus.stop()
    assert bus.retained(TOPIC) < 1024 < 3000
    assert [d.offset for d in held_back.deliveries] == list(range(3000))


def test_one_group_has_one_handler_per_topic_and_subscribes_before_start() -> None:
    bus = InProcessBus()

    async def handler(delivery: Delivery) -> None: ...

    bus.subscribe(TOPIC, "projector", handler)
    with pytest.raises(ValueError, match="already has a handler"):
        bus.subscribe(TOPIC, "projector", handler)


async def test_subscribing_after_start_is_refused(bus: InProcessBus) -> None:
    async def handler(delivery: Delivery) -> None: ...

    await bus.start()
    with pytest.raises(RuntimeError, match="before start"):
        bus.subscribe(TOPIC, "projector", handler)


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a condition; callers bound it with wait_for."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0.005)


async def test_a_batch_subscriber_gets_consecutive_records_and_a_failed_batch_again() -> None:
    from infra.bus import Delivery as Got

    bus = InProcessBus(partitions=1, retry_initial=0.01)
    batches: list[list[int]] = []
    failures = 1

    async def handle(records: list[Got]) -> None:
        nonlocal failures
        batches.append([r.offset for r in records])
        if failures:
            failures -= 1
            raise RuntimeError("database blip")

    bus.subscribe_batch("t", "g", handle, max_batch=4)
    await bus.publish_many([Record("t", str(i).encode(), key="k") for i in range(10)])
    await bus.start()
    for _ in range(200):
        if bus.idle():
            break
        await asyncio.sleep(0.01)
    await bus.stop()
    assert batches[0] == batches[1] == [0, 1, 2, 3]  # retried whole, in order
    assert [o for batch in batches[1:] for o in batch] == list(range(10))
    assert all(len(b) <= 4 for b in batches)


async def test_a_publisher_waits_while_the_slowest_group_is_a_backlog_behind() -> None:
    """The relay must not run the whole event store into memory ahead of a slow read model."""
    bus = InProcessBus(partitions=1, graceful_timeout=WAIT, max_backlog=10)
    gate = asyncio.Event()

    async def slow(_: Delivery) -> None:
        await gate.wait()

    fast = Collector(40)
    bus.subscribe(TOPIC, "slow", slow)
    bus.subscribe(TOPIC, "fast", fast)
    await bus.start()
    try:
        for n in range(10):
            await asyncio.wait_for(bus.publish(Record(TOPIC, b"%d" % n, key="k")), WAIT)
        blocked = asyncio.create_task(bus.publish_many(keyed(30, 1)))
        await asyncio.sleep(0.05)
        assert not blocked.done()  # accepted (40 held), but the publisher waits
        assert bus.retained(TOPIC) == 40
        gate.set()
        await asyncio.wait_for(blocked, WAIT)
        await fast.wait()
    finally:
        gate.set()
        await bus.stop()


async def test_publishing_never_waits_for_a_topic_nobody_reads_or_a_stopped_bus() -> None:
    bus = InProcessBus(partitions=1, graceful_timeout=WAIT, max_backlog=1)
    await asyncio.wait_for(bus.publish_many(keyed(5, 1)), WAIT)  # not started
    await bus.start()
    try:
        await asyncio.wait_for(bus.publish_many(keyed(5, 1)), WAIT)  # no group
    finally:
        await bus.stop()


async def test_stopping_releases_a_waiting_publisher() -> None:
    bus = InProcessBus(partitions=1, graceful_timeout=0.1, max_backlog=1)
    gate = asyncio.Event()

    async def stuck(_: Delivery) -> None:
        await gate.wait()

    bus.subscribe(TOPIC, "stuck", stuck)
    await bus.start()
    blocked = asyncio.create_task(bus.publish_many(keyed(5, 1)))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    await bus.stop()
    await asyncio.wait_for(blocked, WAIT)
    gate.set()


async def test_a_running_bus_keeps_nothing_of_a_topic_nobody_reads() -> None:
    bus = InProcessBus(partitions=1)
    await bus.publish_many(keyed(3, 1))  # before start a group may still subscribe
    assert bus.retained(TOPIC) == 3 and not bus.has_readers(TOPIC)
    await bus.start()
    try:
        await bus.publish_many(keyed(5, 1))
        assert bus.retained(TOPIC) == 3
    finally:
        await bus.stop()


def test_a_topic_has_readers_once_a_group_subscribes() -> None:
    bus = InProcessBus()

    async def handler(delivery: Delivery) -> None: ...

    assert not bus.has_readers(TOPIC)
    bus.subscribe(TOPIC, "projector", handler)
    assert bus.has_readers(TOPIC)
