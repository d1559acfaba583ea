"""KafkaBus on the real broker: order per key, groups, retries, shared work, clean hand-over."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiokafka.errors import KafkaConnectionError  # type: ignore[import-untyped]
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from infra.bus import Delivery, Record
from infra.bus.kafka import KafkaBus
from infra.devservices.kafka.launcher import LocalKafka
from infra.devservices.ports import free_port
from tests.integration.kafka_buses import WAIT, bus_factory, unique, until

pytestmark = pytest.mark.integration

PARTITIONS = 8


def records(topic: str, count: int, keys: int, *, start: int = 0) -> list[Record]:
    """~300-byte records; the value starts with a sequence number, global across keys."""
    return [
        Record(
            topic, f"{n:08d}".encode() + b"." * 292, key=f"trader-{n % keys}", headers={"n": str(n)}
        )
        for n in range(start, start + count)
    ]


def seq(delivery: Delivery) -> int:
    return int(delivery.value[:8])


class Recorder:
    """A handler that keeps every delivery it was handed, optionally after a hook."""

    def __init__(self, hook: Callable[[Delivery], Awaitable[None]] | None = None) -> None:
        self.hook = hook
        self.deliveries: list[Delivery] = []

    async def __call__(self, delivery: Delivery) -> None:
        if self.hook is not None:
            await self.hook(delivery)
        self.deliveries.append(delivery)

    def by_key(self) -> dict[str | None, list[int]]:
        seen: dict[str | None, list[int]] = defaultdict(list)
        for delivery in self.deliveries:
            seen[delivery.key].append(seq(delivery))
        return dict(seen)


@pytest.fixture
async def make_bus(kafka_bootstrap: str) -> AsyncIterator[Callable[..., KafkaBus]]:
    async with bus_factory(
        kafka_bootstrap,
        partitions=PARTITIONS,
        retry_initial=0.1,
        retry_max=1.0,
        graceful_timeout=10.0,
        heartbeat_interval_ms=1000,
    ) as make:
        yield make


async def test_a_thousand_keyed_records_are_each_consumed_once_in_key_order(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, bus = unique("test.bus-order"), make_bus()
    recorder = Recorder()
    bus.subscribe(topic, unique("projector"), recorder)
    await bus.start()
    sent = records(topic, 1000, keys=37)
    await bus.publish_many(sent)
    await until(lambda: len(recorder.deliveries) >= 1000, "1000 deliveries")
    await asyncio.sleep(1.0)  # long enough for a duplicate to show up

    expected: dict[str | None, list[int]] = defaultdict(list)
    for n, record in enumerate(sent):
        expected[record.key].append(n)
    assert recorder.by_key() == expected
    assert len(recorder.deliveries) == 1000
    assert all(d.redelivered == 0 for d in recorder.deliveries)
    assert recorder.deliveries[0].headers == {"n": str(seq(recorder.deliveries[0]))}
    assert len(recorder.deliveries[0].value) == 300
    # The topic was created by the bus with its partition count, and keys kept their partition.
    assert {d.partition for d in recorder.deliveries} == set(range(PARTITIONS))
    partitions_per_key = defaultdict(set)
    for d in recorder.deliveries:
        partitions_per_key[d.key].add(d.partition)
    assert all(len(p) == 1 for p in partitions_per_key.values())


async def test_every_group_receives_every_record(make_bus: Callable[..., KafkaBus]) -> None:
    topic, bus = unique("test.bus-groups"), make_bus()
    projections, webhooks = Recorder(), Recorder()
    bus.subscribe(topic, unique("projections"), projections)
    bus.subscribe(topic, unique("webhooks"), webhooks)
    await bus.start()
    await bus.publish_many(records(topic, 200, keys=9))
    await until(lambda: len(projections.deliveries) >= 200, "the first group")
    await until(lambda: len(webhooks.deliveries) >= 200, "the second group")

    assert projections.by_key() == webhooks.by_key()
    assert sorted(seq(d) for d in projections.deliveries) == list(range(200))


async def test_a_handler_failing_twice_gets_the_record_three_times_and_order_holds(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, bus = unique("test.bus-retry"), make_bus(retry_initial=0.3, retry_max=1.0)
    key, other = _keys_on_different_partitions()
    calls: list[tuple[str | None, int, int]] = []

    async def fail_twice_on_third(delivery: Delivery) -> None:
        calls.append((delivery.key, seq(delivery), delivery.redelivered))
        if delivery.key == key and seq(delivery) == 2 and delivery.redelivered < 2:
            raise RuntimeError("the venue is down")

    recorder = Recorder(fail_twice_on_third)
    bus.subscribe(topic, unique("execution"), recorder)
    await bus.start()
    await bus.publish_many([Record(topic, f"{n:08d}".encode(), key=key) for n in range(10)])
    await bus.publish_many([Record(topic, f"{n:08d}".encode(), key=other) for n in range(5)])
    await until(lambda: len(recorder.deliveries) >= 15, "15 deliveries")
    await asyncio.sleep(0.5)

    assert [(n, r) for k, n, r in calls if k == key and n == 2] == [(2, 0), (2, 1), (2, 2)]
    assert recorder.by_key() == {key: list(range(10)), other: list(range(5))}
    # While the failed record waited out its back-off, the other partition kept flowing.
    third_done = next(i for i, d in enumerate(recorder.deliveries) if d.key == key and seq(d) == 2)
    assert [d.key for d in recorder.deliveries[:third_done]].count(other) == 5
    assert recorder.deliveries[third_done].redelivered == 2


async def test_two_buses_in_one_group_share_the_partitions_and_each_record_is_handled_once(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, group = unique("test.bus-shared"), unique("credit-check")
    first, second = make_bus(), make_bus()
    first_seen, second_seen = Recorder(), Recorder()
    first.subscribe(topic, group, first_seen)
    second.subscribe(topic, group, second_seen)
    await asyncio.gather(first.start(), second.start())

    def split() -> bool:
        mine = first.assigned_partitions(topic, group)
        theirs = second.assigned_partitions(topic, group)
        return bool(mine) and bool(theirs) and mine | theirs == set(range(PARTITIONS))

    await until(split, "both buses to hold partitions")
    await first.publish_many(records(topic, 1000, keys=101))

    def total() -> int:
        return len(first_seen.deliveries) + len(second_seen.deliveries)

    await until(lambda: total() >= 1000, "1000 deliveries over both buses")
    await asyncio.sleep(1.0)

    handled = Counter(seq(d) for d in first_seen.deliveries + second_seen.deliveries)
    assert sorted(handled) == list(range(1000))
    assert set(handled.values()) == {1}
    assert first_seen.deliveries and second_seen.deliveries
    assert not {d.partition for d in first_seen.deliveries} & {
        d.partition for d in second_seen.deliveries
    }


async def test_a_bus_leaving_the_group_hands_its_partitions_over_without_loss(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, group = unique("test.bus-handover"), unique("execution")
    staying, leaving = make_bus(), make_bus()

    async def a_little_work(delivery: Delivery) -> None:
        await asyncio.sleep(0.001)

    stayed, left = Recorder(a_little_work), Recorder(a_little_work)
    staying.subscribe(topic, group, stayed)
    leaving.subscribe(topic, group, left)
    await asyncio.gather(staying.start(), leaving.start())
    await until(lambda: bool(leaving.assigned_partitions(topic, group)), "a share for the leaver")

    await staying.publish_many(records(topic, 1000, keys=101))
    await until(lambda: len(left.deliveries) >= 100, "the leaver to be busy")
    await leaving.stop()  # mid-stream: the group rebalances onto the remaining bus
    await staying.publish_many(records(topic, 1000, keys=101, start=1000))

    def total() -> int:
        return len({seq(d) for d in stayed.deliveries + left.deliveries})

    await until(lambda: total() >= 2000, "every record after the hand-over")
    await asyncio.sleep(1.0)

    handled = Counter(seq(d) for d in stayed.deliveries + left.deliveries)
    assert sorted(handled) == list(range(2000))
    # Graceful stop and the revocation listener both commit what was handled first.
    assert [n for n, times in handled.items() if times > 1] == []
    for recorder in (stayed, left):
        by_key = recorder.by_key()
        assert all(seqs == sorted(seqs) for seqs in by_key.values())


async def test_a_restarted_consumer_resumes_after_the_last_committed_record(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, group = unique("test.bus-restart"), unique("settlement")
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def slow_on_fiftieth(delivery: Delivery) -> None:
        if seq(delivery) == 50:
            in_flight.set()
            await release.wait()

    before = Recorder(slow_on_fiftieth)
    first = make_bus()
    first.subscribe(topic, group, before)
    await first.start()
    # One key: one partition, so "after the last committed record" is a single position.
    await first.publish_many(records(topic, 200, keys=1))
    await asyncio.wait_for(in_flight.wait(), WAIT)
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.2)
    assert not stopping.done(), "stop() must wait for the in-flight handler"
    release.set()
    await asyncio.wait_for(stopping, WAIT)
    assert [seq(d) for d in before.deliveries] == list(range(51))

    after = Recorder()
    second = make_bus()
    second.subscribe(topic, group, after)
    await second.start()
    await second.publish_many(records(topic, 50, keys=1, start=200))
    await until(lambda: len(after.deliveries) >= 199, "the rest of the records")
    await asyncio.sleep(0.5)

    # Graceful stop committed the in-flight record too: no loss and nothing twice.
    assert [seq(d) for d in after.deliveries] == list(range(51, 250))


async def test_a_record_still_failing_at_stop_is_not_committed_and_stop_is_prompt(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, group = unique("test.bus-poison"), unique("pricing")
    key, other = _keys_on_different_partitions()

    async def always_fail_on_key(delivery: Delivery) -> None:
        if delivery.key == key:
            raise RuntimeError("poison")

    failing = Recorder(always_fail_on_key)
    first = make_bus(retry_initial=5.0, retry_max=5.0)
    first.subscribe(topic, group, failing)
    await first.start()
    await first.publish_many([Record(topic, b"00000000", key=key)])
    await first.publish_many([Record(topic, f"{n:08d}".encode(), key=other) for n in range(5)])
    await until(lambda: len(failing.deliveries) >= 5, "the healthy partition")
    started = time.monotonic()
    await first.stop()  # the poisoned partition sits in a 5 s back-off: stop must not wait
    assert time.monotonic() - started < 3.0

    after = Recorder()
    second = make_bus()
    second.subscribe(topic, group, after)
    await second.start()
    await until(lambda: len(after.deliveries) >= 1, "the uncommitted record")
    await asyncio.sleep(0.5)
    assert [(d.key, seq(d)) for d in after.deliveries] == [(key, 0)]


def _keys_on_different_partitions() -> tuple[str, str]:
    """Two keys that Kafka's default (murmur2) partitioner puts on different partitions."""
    partitioner, partitions = DefaultPartitioner(), list(range(PARTITIONS))
    first = "op-0"
    where = partitioner(first.encode(), partitions, partitions)
    other = next(
        f"op-{n}"
        for n in range(1, 100)
        if partitioner(f"op-{n}".encode(), partitions, partitions) != where
    )
    return first, other


async def test_batches_are_runs_of_one_partition_in_order_each_record_once(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, bus = unique("test.bus-batch"), make_bus()
    runs: list[list[Delivery]] = []

    async def take(run: list[Delivery]) -> None:
        runs.append(run)

    bus.subscribe_batch(topic, unique("read-models"), take, max_batch=100)
    await bus.start()
    sent = records(topic, 2000, keys=37)
    await bus.publish_many(sent)
    await until(lambda: sum(map(len, runs)) >= 2000, "2000 records in batches")
    await asyncio.sleep(1.0)  # long enough for a duplicate to show up

    assert sum(map(len, runs)) == 2000
    assert all(len({d.partition for d in run}) == 1 for run in runs)
    assert all(
        [d.offset for d in run] == list(range(run[0].offset, run[0].offset + len(run)))
        for run in runs
    )
    assert max(map(len, runs)) > 1  # they really were batched
    assert max(map(len, runs)) <= 100
    seen: dict[str | None, list[int]] = defaultdict(list)
    for run in runs:
        for delivery in run:
            seen[delivery.key].append(seq(delivery))
    expected: dict[str | None, list[int]] = defaultdict(list)
    for n, record in enumerate(sent):
        expected[record.key].append(n)
    assert seen == expected


async def test_a_failing_batch_is_retried_from_its_first_record_and_others_flow(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, bus = unique("test.bus-batch-retry"), make_bus(retry_initial=0.3, retry_max=1.0)
    key, other = _keys_on_different_partitions()
    handled: list[tuple[str | None, int, int]] = []
    failures = 0

    async def fail_twice_on_seven(run: list[Delivery]) -> None:
        nonlocal failures
        if any(d.key == key and seq(d) == 7 for d in run) and failures < 2:
            failures += 1
            raise RuntimeError("the database is down")
        handled.extend((d.key, seq(d), d.redelivered) for d in run)

    bus.subscribe_batch(topic, unique("read-models"), fail_twice_on_seven)
    await bus.start()
    await bus.publish_many([Record(topic, f"{n:08d}".encode(), key=key) for n in range(10)])
    await bus.publish_many([Record(topic, f"{n:08d}".encode(), key=other) for n in range(5)])
    await until(lambda: len(handled) >= 15, "15 records handled")
    await asyncio.sleep(0.5)

    assert failures == 2
    assert [n for k, n, _ in handled if k == key] == list(range(10))  # nothing twice, in order
    assert [n for k, n, _ in handled if k == other] == list(range(5))
    # The failed run's first record came back counted as redelivered twice.
    assert [r for k, _, r in handled if k == key].count(2) == 1


async def test_a_restarted_batch_consumer_resumes_after_the_last_committed_run(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, group = unique("test.bus-batch-resume"), unique("read-models")
    first_seen: list[int] = []

    async def first(run: list[Delivery]) -> None:
        first_seen.extend(seq(d) for d in run)

    bus = make_bus()
    bus.subscribe_batch(topic, group, first)
    await bus.start()
    await bus.publish_many(records(topic, 300, keys=11))
    await until(lambda: len(first_seen) >= 300, "the first 300")
    await bus.stop()

    second_seen: list[int] = []

    async def second(run: list[Delivery]) -> None:
        second_seen.extend(seq(d) for d in run)

    again = make_bus()
    again.subscribe_batch(topic, group, second)
    await again.start()
    await again.publish_many(records(topic, 100, keys=11, start=300))
    await until(lambda: len(second_seen) >= 100, "the next 100")
    await asyncio.sleep(1.0)
    assert sorted(first_seen) == list(range(300))
    assert sorted(second_seen) == list(range(300, 400))


async def test_a_bus_started_while_the_broker_is_away_waits_for_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A worker starting during a broker restart must not exit (nothing would restart it)."""
    kafka = LocalKafka(home=tmp_path_factory.mktemp("kafka-away"))
    bootstrap = await asyncio.to_thread(kafka.start)
    await asyncio.to_thread(kafka.stop)
    bus = KafkaBus(bootstrap, client_id="away", partitions=1)
    seen: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(delivery: Delivery) -> None:
        await seen.put(delivery.value)

    bus.subscribe("away.things", "away", handle)
    try:
        starting = asyncio.create_task(bus.start())
        await asyncio.sleep(2.0)
        assert not starting.done()  # still waiting, not failed
        await asyncio.to_thread(kafka.start)
        await asyncio.wait_for(starting, 60)
        await bus.publish(Record("away.things", b"hello", key="k"))
        assert await asyncio.wait_for(seen.get(), 60) == b"hello"
    finally:
        await bus.stop()
        await asyncio.to_thread(kafka.stop)


async def test_a_broker_that_never_comes_fails_the_start_loudly() -> None:
    bus = KafkaBus(f"127.0.0.1:{free_port()}", client_id="never", connect_timeout=2.0)
    began = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await bus.start()
    assert time.monotonic() - began < 10
