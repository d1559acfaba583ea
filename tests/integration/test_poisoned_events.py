"""Poisoned events on real PostgreSQL, through `ProjectionWriter` as the bus drives it: an
event the read models cannot store costs its own stream's rows, never the partition; it is
listed, survives redelivery and rebuilds without being counted twice, and a retry after the
fix applies its stream so the rows equal a rebuild's.

The poison is made honestly at the event level. Input checks now refuse the values that
first poisoned the read models, so the events here are either ordinary ones that a stricter
read-model table refuses (a CHECK constraint the test adds, as a migration could, and drops
as the fix) or, for the rebuild, a Strategy whose metadata holds a NUL, saved through the
application itself but past `create_strategy`'s check, as a history written before that
check existed holds it: PostgreSQL's jsonb cannot store `\\u0000`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import asyncpg
import pytest
from eventsourcing.persistence import Mapper

from domain import ids
from domain.strategy import Strategy
from infra.bus import Delivery
from projections import poisoned
from projections.rebuild import rebuild
from projections.retry import retry_poisoned
from projections.writer import ProjectionWriter
from tests.integration.test_projections import TOPIC, Partitions, real_story, snapshot
from tests.unit.domain.flows import PLATFORM
from tests.unit.projections.history import messages

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from typing import Any
    from uuid import UUID

    from tests.unit.projections.history import Story

    Tables = dict[str, list[dict[str, Any]]]

pytestmark = pytest.mark.integration

REFUSED = "P2"


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=6)
    yield created
    await created.close()


async def consume_in_batches(writer: ProjectionWriter, by_partition: dict[int, list[Delivery]]):
    async def drain(deliveries: list[Delivery]) -> None:
        for start in range(0, len(deliveries), 7):
            await writer.handle_many(deliveries[start : start + 7])

    await asyncio.gather(*(drain(d) for d in by_partition.values()))


def without_trader_rows(tables: dict, trader_id: object) -> dict:
    """Every read-model row but those the refused Trader's own stream writes."""
    return {
        name: [r for r in rows if r["id"] != trader_id and r.get("trader_id") != trader_id]
        for name, rows in tables.items()
    }


async def refuse_a_trader(pool: asyncpg.Pool, app: object, told: Story) -> tuple[UUID, Tables]:
    """The rows a rebuild gives, then a traders table that refuses REFUSED's row."""
    await rebuild(pool, app, "scratch")  # type: ignore[arg-type]
    expected = await snapshot(pool, "scratch")
    await pool.execute(
        f"ALTER TABLE traders ADD CONSTRAINT it_refused CHECK (participant_code <> '{REFUSED}')"
    )
    return told.trader(REFUSED).id, expected


async def test_a_poisoned_event_parks_its_stream_only_and_a_retry_after_the_fix_applies_it(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    app, told, _ = await asyncio.to_thread(real_story, fresh_database_url)
    try:
        history = await asyncio.to_thread(messages, app)
        refused, expected = await refuse_a_trader(pool, app, told)
        writer = ProjectionWriter(pool)
        partitions = Partitions()
        deliveries = partitions.deliver(history)
        await consume_in_batches(writer, deliveries)

        # Everything but the refused Trader's stream is in the read models.
        live = await snapshot(pool, "public")
        assert without_trader_rows(live, refused) == without_trader_rows(expected, refused)
        assert refused not in {r["id"] for r in live["traders"]}
        first, *parked = await poisoned.list_poisoned(pool)
        stream = [m for m in history if m.aggregate_id == refused]
        assert [first.position, *(p.position for p in parked)] == [m.position for m in stream]
        assert (first.status, first.error_class, first.event_type) == (
            "poisoned",
            "CheckViolationError",
            stream[0].type,
        )
        assert "it_refused" in first.error_message
        assert {(p.status, p.attempts, p.aggregate_id) for p in parked} == {("parked", 1, refused)}
        assert first.topic and first.partition is not None and first.offset is not None
        recorded = await poisoned.list_poisoned(pool)

        # Redelivered, republished or rebuilt: no new row, no new attempt.
        await consume_in_batches(writer, deliveries)
        await consume_in_batches(writer, partitions.deliver(history))
        assert await poisoned.list_poisoned(pool) == recorded
        assert await poisoned.count_unresolved(pool) == len(stream)

        # Retried before the fix: still poisoned, one more attempt, its stream still parked.
        await retry_poisoned(writer, [first.id])
        again, *still_parked = await poisoned.list_poisoned(pool)
        assert (again.status, again.attempts) == ("poisoned", 2)
        assert [p.status for p in still_parked] == ["parked"] * len(parked)

        await pool.execute("ALTER TABLE traders DROP CONSTRAINT it_refused")  # the fix
        await retry_poisoned(writer, [first.id])
        assert await snapshot(pool, "public") == expected
        done = await poisoned.list_poisoned(pool)
        assert {p.status for p in done} == {"resolved"}
        assert all(p.resolved_at is not None for p in done)
        assert await poisoned.count_unresolved(pool) == 0

        # Twice is harmless: a resolved event is not applied again, nothing changes.
        await retry_poisoned(writer, [first.id])
        await retry_poisoned(writer, None)
        assert await poisoned.list_poisoned(pool) == done
        assert await snapshot(pool, "public") == expected
    finally:
        await asyncio.to_thread(app.close)


async def test_an_event_refused_in_the_middle_of_a_batch_costs_its_own_stream_only(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    app, told, _ = await asyncio.to_thread(real_story, fresh_database_url)
    try:
        history = await asyncio.to_thread(messages, app)
        refused, expected = await refuse_a_trader(pool, app, told)
        stream = [m for m in history if m.aggregate_id == refused]
        first = history.index(stream[0])
        assert 0 < first < len(history) - 1
        # One batch holding the whole history, in log order, the refused stream inside it.
        batch = [
            Delivery(TOPIC, event.encode(), str(event.aggregate_id), {}, 0, offset)
            for offset, event in enumerate(history)
        ]
        await ProjectionWriter(pool).handle_many(batch)

        live = await snapshot(pool, "public")
        assert without_trader_rows(live, refused) == without_trader_rows(expected, refused)
        assert refused not in {r["id"] for r in live["traders"]}
        found = await poisoned.list_poisoned(pool)
        assert [p.position for p in found] == [m.position for m in stream]
        assert [p.status for p in found] == ["poisoned"] + ["parked"] * (len(stream) - 1)
        assert found[0].error_class == "CheckViolationError"
    finally:
        await asyncio.to_thread(app.close)


def save_strategy_with_nul(app: object, metadata: object = None) -> Strategy:
    """A Strategy whose metadata jsonb cannot hold, saved as an old history holds it."""
    request_id = uuid4()
    strategy = Strategy(PLATFORM, request_id, "USD", metadata or {"note": "a\x00b"}, "legacy")
    assert strategy.id == ids.strategy_id(PLATFORM, request_id)
    # In eventsourcing's tagged form, as older releases wrote it: the typed form refuses a NaN
    # (see tests/unit/infra/test_event_codec.py) rather than store it as null.
    trading: Any = app
    tagged = [Mapper.to_stored_event(trading.mapper, e) for e in strategy.collect_events()]
    trading.recorder.insert_events(tagged)
    return strategy


async def test_a_rebuild_records_what_it_cannot_apply_once_and_goes_on(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    app, told, other = await asyncio.to_thread(real_story, fresh_database_url)
    try:
        bad = await asyncio.to_thread(save_strategy_with_nul, app)
        history = await asyncio.to_thread(messages, app)
        assert await rebuild(pool, app, "scratch", batch_size=5) == len(history)
        (row,) = await poisoned.list_poisoned(pool, "scratch")
        assert (row.aggregate_id, row.status, row.error_class) == (
            bad.id,
            "poisoned",
            "UntranslatableCharacterError",
        )
        assert "\\u0000" in row.error_message
        rebuilt = await snapshot(pool, "scratch")
        assert {told.strategy.id, other.id} == {r["id"] for r in rebuilt["strategies"]}

        assert await rebuild(pool, app, "scratch") == len(history)
        (again,) = await poisoned.list_poisoned(pool, "scratch")
        assert (again.id, again.attempts, again.status) == (row.id, 2, "poisoned")
        assert await snapshot(pool, "scratch") == rebuilt
    finally:
        await asyncio.to_thread(app.close)


async def test_a_rebuild_poisons_metadata_holding_nan_rather_than_storing_null(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    """jsonb has no NaN: the event is poisoned as it always was, never written as a null (the
    fast JSON writer would write one; a client's document keeps the exact one)."""
    app, _told, _ = await asyncio.to_thread(real_story, fresh_database_url)
    try:
        metadata = {"ratio": float("nan")}
        bad = await asyncio.to_thread(save_strategy_with_nul, app, metadata)
        await rebuild(pool, app, "scratch")
        (row,) = await poisoned.list_poisoned(pool, "scratch")
        assert (row.aggregate_id, row.error_class) == (bad.id, "InvalidTextRepresentationError")
        rebuilt = await snapshot(pool, "scratch")
        assert bad.id not in {r["id"] for r in rebuilt["strategies"]}
    finally:
        await asyncio.to_thread(app.close)
