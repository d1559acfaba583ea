"""Messages really travel through the broker from `kafka_bootstrap`: faststream and aiokafka."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from decimal import Decimal
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

pytestmark = pytest.mark.integration

RECEIVE_TIMEOUT = 30.0


class PriceQuoted(BaseModel):
    symbol: str
    price: Decimal


def _unique(name: str) -> str:
    # Topics and groups are never reused, so a shared or long-lived broker cannot leak state
    # between tests.
    return f"{name}-{uuid4().hex[:12]}"


async def test_faststream_subscriber_receives_a_published_pydantic_message(
    kafka_bootstrap: str,
) -> None:
    topic = _unique("test.price-quoted")
    received: asyncio.Future[PriceQuoted] = asyncio.get_running_loop().create_future()
    broker = KafkaBroker(kafka_bootstrap)

    @broker.subscriber(topic, group_id=_unique("roundtrip"), auto_offset_reset="earliest")
    async def on_price_quoted(msg: PriceQuoted) -> None:
        if not received.done():
            received.set_result(msg)

    sent = PriceQuoted(symbol="BTC", price=Decimal("64123.45678901"))
    async with broker:
        await broker.start()
        await broker.publish(sent, topic)
        got = await asyncio.wait_for(received, timeout=RECEIVE_TIMEOUT)
    assert got == sent


async def test_keyed_messages_keep_their_order_per_key(kafka_bootstrap: str) -> None:
    topic = _unique("test.keyed")
    keys = [f"trader-{n}".encode() for n in range(8)]
    per_key = 25
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        sends = [
            await producer.send(topic, key=key, value=str(seq).encode())
            for seq in range(per_key)
            for key in keys
        ]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    seen: dict[bytes, list[int]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=_unique("keyed"),
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        while sum(map(len, seen.values())) < len(keys) * per_key:
            assert time.monotonic() < deadline, f"only got {dict(seen)}"
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    assert record.key is not None
                    assert record.value is not None
                    seen[record.key].append(int(record.value))
                    partitions[record.key].add(tp.partition)
        topic_partitions = consumer.partitions_for_topic(topic)
    finally:
        await consumer.stop()

    assert {key: seen[key] for key in keys} == {key: list(range(per_key)) for key in keys}
    assert all(len(partitions[key]) == 1 for key in keys)
    assert topic_partitions == {0, 1, 2, 3}  # auto-created with the broker's num.partitions
