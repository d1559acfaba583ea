"""The gauges of a process on Kafka (issue 20): the consumer lag of the partitions it holds
(end offset minus committed offset), the chunks waiting for a stage, the float available,
and its database pools, read the way the engine's refresher reads them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest

from infra.bootstrap import gauges
from infra.bootstrap.engine import Engine
from infra.bus import Delivery, Record
from infra.bus.kafka import KafkaBus
from infra.bus.kafka_lag import consumer_lags
from infra.bus.topic_names import Topics
from infra.metrics import METRICS
from tests.integration.kafka_buses import bus_factory, unique, until
from tests.integration.pipeline.harness import (
    engine_settings,
    request_enrollment,
    wait_terminal,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

PLATFORM = "LAGS01"
STAGES = ["credit-check", "pricing", "execution"]


@pytest.fixture
async def make_bus(kafka_bootstrap: str) -> AsyncIterator[Callable[..., KafkaBus]]:
    async with bus_factory(kafka_bootstrap, partitions=2, heartbeat_interval_ms=1000) as make:
        yield make


async def test_consumer_lag_is_what_the_group_has_not_committed(
    make_bus: Callable[..., KafkaBus],
) -> None:
    topic, group = unique("lag"), unique("lag-group")
    release = asyncio.Event()
    handled: list[int] = []

    async def held(delivery: Delivery) -> None:
        await release.wait()
        handled.append(delivery.offset)

    bus = make_bus()
    bus.subscribe(topic, group, held)
    await bus.start()
    await until(lambda: bool(bus.assigned_partitions(topic, group)), "the group's partitions")
    await bus.publish_many([Record(topic, b"x", key="one-key") for _ in range(5)])

    async def lag_is(expected: int) -> list[tuple[str, str, int, int]]:
        deadline = time.monotonic() + 30
        while True:
            lags = await consumer_lags(bus.group_consumers())
            if sum(lag.lag for lag in lags) == expected:
                return [(x.group, x.topic, x.partition, x.lag) for x in lags]
            assert time.monotonic() < deadline, lags
            await asyncio.sleep(0.1)

    # the first record is in the handler, nothing committed: the whole partition lags
    waiting = await lag_is(5)
    assert {(g, t) for g, t, _, _ in waiting} == {(group, topic)}
    assert sorted(p for _, _, p, _ in waiting) == [0, 1]  # every partition held, idle ones at 0
    release.set()
    await until(lambda: len(handled) == 5, "the records handled")
    assert await lag_is(0)


async def test_an_engine_reports_chunks_waiting_lag_float_and_pools(
    fresh_database_url: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(gauges, "REFRESH_S", 0.2)
    settings = engine_settings(fresh_database_url, kafka_bootstrap, tmp_path, "gauges")
    topics = Topics(settings.topic_prefix)
    METRICS.consumer_lag.clear()
    async with Engine(settings, fresh_database_url, ["relay", "projections"]) as engine:
        operation_id = await request_enrollment(engine, PLATFORM, ["L1", "L2", "L3"])  # 2 chunks
        # published to the check, nobody checking: both chunks wait there
        await _eventually(lambda: _value("strategies_chunks_in_flight", stage="check") == 2)
        await _eventually(
            lambda: (
                _value("strategies_float_available", platform=PLATFORM, currency="USD") == 10_000
            )
        )
        read_models = topics.group("read-models")
        await _eventually(lambda: _lag_series(read_models, topics.events) > 0)
        for pool in ("engine", "event_store"):
            assert (
                _value("strategies_db_pool_connections", pool=pool, state="idle")
                + _value("strategies_db_pool_connections", pool=pool, state="in_use")
                >= 1
            ), pool

        async with Engine(settings, fresh_database_url, STAGES):
            await wait_terminal(engine.trading, operation_id)
            # read from the read models, which follow the store: both come down, in time
            await _eventually(lambda: _value("strategies_chunks_in_flight", stage="check") == 0)
            await _eventually(lambda: _value("strategies_chunks_in_flight", stage="settle") == 0)
            # the stage consumers' partitions show, each caught up once its records committed
            checks = topics.group("credit-check")
            await _eventually(lambda: _lag_series(checks, topics.credit_check) > 0)
            await _eventually(lambda: _lag_total(checks) == 0)
            spent = "strategies_float_available"
            await _eventually(lambda: _value(spent, platform=PLATFORM, currency="USD") < 10_000)


def _value(name: str, **labels: str) -> float:
    return METRICS.registry.get_sample_value(name, labels) or 0.0


def _lags() -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in METRICS.registry.collect()
        if family.name == "strategies_consumer_lag_messages"
        for sample in family.samples
    ]


def _lag_series(group: str, topic: str) -> int:
    return sum(1 for labels, _ in _lags() if (labels["group"], labels["topic"]) == (group, topic))


def _lag_total(group: str) -> float:
    return sum(value for labels, value in _lags() if labels["group"] == group)


async def _eventually(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the gauges never got there"
        await asyncio.sleep(0.05)
