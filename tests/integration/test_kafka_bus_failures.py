"""KafkaBus on the real broker when Kafka says no: an offset commit that fails, and a
batch publish that partly fails. What the bus promises (see `infra.bus`): at least once
(a record whose offset was not committed comes back) and `publish_many` returning only
once every record is acknowledged, so that a caller who retries a failed batch loses
nothing and sees every key in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.admin.config_resource import (  # type: ignore[import-untyped]
    ConfigResource,
    ConfigResourceType,
)
from aiokafka.errors import MessageSizeTooLargeError  # type: ignore[import-untyped]

from infra.bus import Delivery, Record
from infra.bus.kafka import KafkaBus
from tests.integration.kafka_buses import bus_factory, unique, until

pytestmark = pytest.mark.integration

#: A handler that runs longer than this makes the consumer leave its group.
POLL_INTERVAL_MS = 2_000
#: The topic's largest record batch; the one poisoned record is bigger.
SMALL_LIMIT, LARGE_LIMIT = 20_000, 200_000


@pytest.fixture
async def make_bus(kafka_bootstrap: str) -> AsyncIterator[Callable[..., KafkaBus]]:
    async with bus_factory(
        kafka_bootstrap,
        partitions=1,  # one partition: "in order" is one sequence
        retry_initial=0.1,
        retry_max=0.5,
        graceful_timeout=10.0,
        heartbeat_interval_ms=500,
    ) as make:
        yield make


async def test_a_record_whose_commit_failed_is_delivered_again_and_handled_once(
    make_bus: Callable[..., KafkaBus],
) -> None:
    """Two members of a group share a one-partition topic. Record 2's first handler call
    outlasts max.poll.interval: its member leaves the group and the other member takes the
    partition from the last committed offset, so it gets record 2 again. When the stuck call
    returns, the broker refuses its commit (the group has moved on). Nothing is lost, the
    idempotent handler applies record 2 once, and the group's commits still hold after."""
    topic, group = unique("test.bus-commit"), unique("settlement")
    buses = [make_bus(max_poll_interval_ms=POLL_INTERVAL_MS) for _ in range(2)]
    deliveries: list[int] = []  # the record of every handler call
    applied: dict[int, int] = {}  # offset -> record: what an idempotent handler keeps

    async def settle(delivery: Delivery) -> None:
        number = int(delivery.value)
        deliveries.append(number)
        if number == 2 and deliveries.count(2) == 1:
            await asyncio.sleep(3 * POLL_INTERVAL_MS / 1000)  # a stuck first attempt
        applied.setdefault(delivery.offset, number)

    for bus in buses:
        bus.subscribe(topic, group, settle)
    await asyncio.gather(*(bus.start() for bus in buses))
    await until(
        lambda: sum(len(bus.assigned_partitions(topic, group)) for bus in buses) == 1,
        "the partition to be assigned",
    )
    with structlog.testing.capture_logs() as logs:
        await buses[0].publish_many([Record(topic, str(n).encode(), key="k") for n in range(5)])
        await until(lambda: deliveries.count(2) == 2 and len(applied) == 5, "record 2 again")
        await until(
            lambda: any(line["event"] == "bus.commit_failed" for line in logs),
            "the stuck member's commit to be refused",
        )
        await asyncio.sleep(1.0)  # room for a stray duplicate
    assert sorted(applied.values()) == [0, 1, 2, 3, 4]  # each applied once
    assert deliveries[:3] == [0, 1, 2] and sorted(set(deliveries)) == [0, 1, 2, 3, 4]

    # The commits that followed hold: a new member of the group starts after record 4.
    await asyncio.gather(*(bus.stop() for bus in buses))
    later: list[int] = []

    async def record(delivery: Delivery) -> None:
        later.append(int(delivery.value))

    again = make_bus()
    again.subscribe(topic, group, record)
    await again.start()
    await again.publish_many([Record(topic, b"5", key="k")])
    await until(lambda: 5 in later, "the next record")
    await asyncio.sleep(0.5)
    assert later == [5]


async def _create_topic(bootstrap: str, topic: str, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)}
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs=config)])
    finally:
        await admin.close()


async def _raise_limit(bootstrap: str, topic: str, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, config)])
    finally:
        await admin.close()


async def test_a_partly_refused_batch_is_reported_and_its_retry_delivers_everything_in_order(
    make_bus: Callable[..., KafkaBus], kafka_bootstrap: str
) -> None:
    """One record of a batch is larger than its topic allows: the broker refuses its record
    batch, the other topic's records go through. `publish_many` must raise, and nothing of
    that key may get through after the refused record; once an operator raises the limit,
    the caller's retry of the whole batch (what the relay does) must succeed."""
    strict, easy = unique("test.bus-strict"), unique("test.bus-easy")
    await _create_topic(kafka_bootstrap, strict, SMALL_LIMIT)
    bus = make_bus()
    seen: dict[str, list[bytes]] = {strict: [], easy: []}

    async def keep(delivery: Delivery) -> None:
        seen[delivery.topic].append(delivery.value)

    bus.subscribe(strict, unique("strict-reader"), keep)
    bus.subscribe(easy, unique("easy-reader"), keep)
    await bus.start()
    small = [f"s{n:03d}".encode() + b"." * 100 for n in range(20)]
    huge = b"HUGE" + b"x" * (2 * SMALL_LIMIT)
    strict_values = [*small[:10], huge, *small[10:]]
    easy_values = [f"e{n:03d}".encode() for n in range(5)]
    batch = [Record(strict, value, key="trader-1") for value in strict_values]
    batch += [Record(easy, value, key="trader-2") for value in easy_values]

    with structlog.testing.capture_logs() as logs, pytest.raises(MessageSizeTooLargeError):
        await bus.publish_many(batch)
    failed = [line for line in logs if line["event"] == "bus.publish_failed"]
    assert len(failed) == 1 and failed[0]["records"] == len(batch) and failed[0]["failed"] >= 1
    await until(lambda: len(seen[easy]) == len(easy_values), "the other topic's records")
    await asyncio.sleep(1.0)  # room for anything of the refused key that got through
    before_retry = list(seen[strict])
    assert before_retry == strict_values[: len(before_retry)]  # a prefix: nothing overtook
    assert huge not in before_retry

    await _raise_limit(kafka_bootstrap, strict, LARGE_LIMIT)
    await bus.publish_many(batch)  # the caller's retry of the whole batch
    await until(
        lambda: len(seen[strict]) == len(before_retry) + len(strict_values), "the retried batch"
    )
    await asyncio.sleep(0.5)
    assert seen[strict] == before_retry + strict_values  # at least once, in order per key
    assert seen[easy] == easy_values + easy_values
