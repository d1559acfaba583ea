"""The read models on real PostgreSQL: a real history delivered through `ProjectionWriter` as
the bus delivers it (partitions in parallel, so streams arrive in any order across
partitions), answered by the queries, immune to redelivery, and equal to a rebuild; a batch
writes each table in one upsert, which holds exactly the rows the pure fold computes."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from domain import ids
from domain.chunk import chunk_id
from domain.statuses import OperationType
from infra.bootstrap.engine import Engine
from infra.bus import Delivery
from infra.bus.memory import InProcessBus
from infra.bus.topic_names import Topics
from infra.eventstore.store import PostgresTrading
from infra.settings import Settings
from projections import queries
from projections.rebuild import rebuild
from projections.schema import rows_from_records
from projections.tables import ensure_scratch, read_model_tables
from projections.writer import ROW_TYPES, Projection, ProjectionWriter
from tests.integration.pipeline.harness import wait_terminal
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    check_all,
    funded,
    lock_and_fill,
    settle_all,
)
from tests.unit.projections.history import INELIGIBLE, NEWCOMER, Story, messages, story

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from domain.operation import Operation
    from domain.strategy import Strategy
    from infra.bus.messages import DomainEventMessage

pytestmark = pytest.mark.integration

OTHER = "platform-b"
TOPIC = Topics("it-projections").events
PARTITIONS = 4


class Partitions:
    """Numbers deliveries as a topic would: partition by key, offsets per partition."""

    def __init__(self) -> None:
        self.offsets: dict[int, int] = defaultdict(int)

    def deliver(self, events: Iterable[DomainEventMessage]) -> dict[int, list[Delivery]]:
        by_partition: dict[int, list[Delivery]] = defaultdict(list)
        for event in events:
            key = str(event.aggregate_id)
            partition = zlib.crc32(key.encode()) % PARTITIONS
            offset = self.offsets[partition]
            self.offsets[partition] += 1
            by_partition[partition].append(
                Delivery(TOPIC, event.encode(), key, {}, partition, offset)
            )
        return by_partition


async def consume(writer: ProjectionWriter, by_partition: dict[int, list[Delivery]]) -> None:
    """One task per partition, each in order: the bus's own concurrency."""

    async def drain(deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            await writer.handle_many([delivery])

    await asyncio.gather(*(drain(d) for d in by_partition.values()))


async def snapshot(pool: asyncpg.Pool, schema: str) -> dict[str, list[dict[str, Any]]]:
    tables = {}
    for table in read_model_tables():
        records = await pool.fetch(
            f"SELECT {table.selected()} FROM {table.qualified(schema)} ORDER BY id"
        )
        tables[table.name] = [dict(r) for r in records]
    return tables


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=6)
    yield created
    await created.close()


def other_platform(app: PostgresTrading) -> tuple[Strategy, Operation]:
    """A Strategy and a settled enrollment of the same participant code on another platform."""
    app.register_participants(OTHER, ["P1"])
    app.deposit_float(OTHER, "USD", Decimal("10000.00"), "B-FLOAT")
    strategy, _ = app.create_strategy(OTHER, uuid4(), {"quoted_currency": "USD"})
    body = {"allocations": BLUE_CHIP, "participants": funded(["P1"], "100.00")}
    operation, _ = app.request_operation(
        OTHER, strategy.id, uuid4(), OperationType.ENROLLMENT, body
    )
    check_all(app, operation.id)
    lock_and_fill(app, operation.id)
    return strategy, settle_all(app, operation.id)


def real_story(url: str) -> tuple[PostgresTrading, Story, Strategy]:
    app = PostgresTrading(url, chunk_size=2)
    app.ensure_default_catalogue()
    app.deposit_float(PLATFORM, "USD", Decimal("1000000.00"), "A-FLOAT")
    told = story(app)
    other, _ = other_platform(app)
    return app, told, other


async def test_a_real_history_answers_the_queries_survives_redelivery_and_equals_a_rebuild(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    app, told, other = await asyncio.to_thread(real_story, fresh_database_url)
    try:
        history = await asyncio.to_thread(messages, app)
        writer = ProjectionWriter(pool)
        partitions = Partitions()
        await consume(writer, partitions.deliver(history))
        await check_queries(pool, told, other)

        live = await snapshot(pool, "public")
        # Redelivered (same offsets) and republished (new offsets) events change nothing.
        redelivered = {p: list(reversed(d)) for p, d in Partitions().deliver(history).items()}
        await consume(writer, redelivered)
        await consume(writer, partitions.deliver(history))
        assert await snapshot(pool, "public") == live

        assert await rebuild(pool, app, "scratch", batch_size=7) == len(history)
        assert await snapshot(pool, "scratch") == live
        assert await rebuild(pool, app, "scratch") == len(history)  # again, from scratch
        assert await snapshot(pool, "scratch") == live
        assert await pool.fetchval("SELECT count(*) FROM scratch.projection_offsets") == 0

        # A bus that numbers offsets from 0 again (embedded mode after a restart) still
        # delivers newer events: their log positions are past anything applied.
        await asyncio.to_thread(app.update_trader, PLATFORM, uuid4(), told.trader("P2").id, False)
        flag, key = (await asyncio.to_thread(messages, app))[len(history) :]
        assert (flag.type, key.type) == ("Trader.AutoRebalanceChanged", "RequestKey.Claimed")
        await consume(writer, Partitions().deliver([flag, key]))
        p2 = await queries.get_trader(pool, PLATFORM, told.trader("P2").id)
        assert p2 is not None and p2["auto_rebalance"] is False
    finally:
        await asyncio.to_thread(app.close)


async def test_streams_delivered_in_reverse_give_the_rows_of_a_rebuild(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    """Every chunk's Checked arrives before its Operation's Requested: the rejected
    Executions are placed from the chunk's own platform and strategy, listed at once, and
    the final rows equal a rebuild's."""
    app, told, _ = await asyncio.to_thread(real_story, fresh_database_url)
    try:
        history = await asyncio.to_thread(messages, app)
        streams: dict[UUID, list[DomainEventMessage]] = defaultdict(list)
        for event in history:
            streams[event.aggregate_id].append(event)
        reverse = [event for stream in reversed(streams.values()) for event in stream]
        writer = ProjectionWriter(pool)
        rejecting = chunk_id(told.enrollment.id, 1)  # the chunk that rejects X9
        chunk = next(e for e in reverse if e.aggregate_id == rejecting and e.aggregate_version == 2)
        for event in reverse[: reverse.index(chunk) + 1]:
            await writer.apply_many([event])
        hidden = await pool.fetchval("SELECT count(*) FROM executions WHERE platform_id IS NULL")
        assert hidden == 0
        (early,), _, _, _ = await queries.list_executions(
            pool, PLATFORM, participant_code=INELIGIBLE
        )
        assert early["status"] == "rejected"
        for event in reverse[reverse.index(chunk) + 1 :]:
            await writer.apply_many([event])
        await rebuild(pool, app, "scratch")
        assert await snapshot(pool, "public") == await snapshot(pool, "scratch")
        (ineligible,), _, _, _ = await queries.list_executions(
            pool, PLATFORM, participant_code=INELIGIBLE
        )
        assert ineligible["strategy_id"] == str(told.strategy.id)
    finally:
        await asyncio.to_thread(app.close)


async def check_queries(pool: asyncpg.Pool, told: Story, other: Strategy) -> None:
    strategy = told.strategy
    assert (await queries.get_strategy(pool, PLATFORM, strategy.id) or {})["quoted_currency"] == (
        "USD"
    )
    assert await queries.get_strategy(pool, OTHER, strategy.id) is None
    (mine,), page, pages, _ = await queries.list_strategies(pool, PLATFORM)
    assert (mine["id"], page, pages) == (str(strategy.id), 1, 1)
    (theirs,), _, _, _ = await queries.list_strategies(pool, OTHER)
    assert theirs["id"] == str(other.id)

    await check_traders(pool, told)
    await check_operations(pool, told)
    await check_executions(pool, told)


async def check_traders(pool: asyncpg.Pool, told: Story) -> None:
    traders, _, pages, _ = await queries.list_traders(pool, PLATFORM)
    assert sorted(t["participant_code"] for t in traders) == ["P1", "P2", "P3"]  # N1 pending
    assert pages == 1
    by_id = sorted(traders, key=lambda t: t["id"])
    assert traders == sorted(by_id, key=lambda t: t["created_at"], reverse=True)  # stable
    first, _, pages, _ = await queries.list_traders(pool, PLATFORM, size=2)
    second, page, _, _ = await queries.list_traders(pool, PLATFORM, size=2, page=2)
    assert (len(first), len(second), page, pages) == (2, 1, 2, 2)
    assert first + second == traders
    beyond, page, pages, _ = await queries.list_traders(pool, PLATFORM, size=2, page=5)
    assert (beyond, page, pages) == ([], 5, 2)

    p1 = told.trader("P1")
    item = await queries.get_trader(pool, PLATFORM, p1.id)
    assert item is not None
    assert {a: Decimal(q) for a, q in item["positions"].items()} == p1.positions
    assert (Decimal(item["cash"]), item["status"]) == (p1.cash, "active")
    assert item["account_label"] == str(told.strategy.id)
    assert await queries.get_trader(pool, PLATFORM, told.trader(NEWCOMER).id) is None
    assert await queries.get_trader(pool, OTHER, p1.id) is None
    found, _, _, _ = await queries.list_traders(
        pool, PLATFORM, strategy_id=told.strategy.id, participant_code="P1"
    )
    assert [t["id"] for t in found] == [str(p1.id)]
    assert (await queries.list_traders(pool, PLATFORM, auto_rebalance=False))[0] == []
    assert len((await queries.list_traders(pool, PLATFORM, auto_rebalance=True))[0]) == 3
    assert [t["participant_code"] for t in (await queries.list_traders(pool, OTHER))[0]] == ["P1"]


async def check_operations(pool: asyncpg.Pool, told: Story) -> None:
    everything, _, _, _ = await queries.list_operations(pool, PLATFORM)
    expected = [told.failed_top_up, told.failed_enrollment, told.top_up, told.enrollment]
    assert [o["id"] for o in everything] == [str(o.id) for o in expected]  # newest first
    enrollment = await queries.get_operation(pool, PLATFORM, told.enrollment.id)
    assert enrollment is not None
    assert (enrollment["status"], enrollment["status_reason"]) == ("settled", "partial_success")
    assert enrollment["allocations"] == BLUE_CHIP
    assert enrollment["counts"] == told.enrollment.counts
    assert enrollment["locked_prices"]["BTC"]["price"] == "60000.00"
    assert enrollment["created_at"].endswith("Z")
    assert await queries.get_operation(pool, OTHER, told.enrollment.id) is None

    async def ids_of(**filters: Any) -> list[str]:
        return [o["id"] for o in (await queries.list_operations(pool, PLATFORM, **filters))[0]]

    assert await ids_of(type="top_up") == [str(told.failed_top_up.id), str(told.top_up.id)]
    assert await ids_of(status="failed") == [
        str(told.failed_top_up.id),
        str(told.failed_enrollment.id),
    ]
    assert await ids_of(request_id=told.top_up.request_id) == [str(told.top_up.id)]
    assert await ids_of(strategy_id=told.strategy.id, type="rebalance") == []
    assert await ids_of(
        created_gte=told.top_up.created_on, created_lt=told.failed_top_up.created_on
    ) == [str(told.failed_enrollment.id), str(told.top_up.id)]
    naive = told.top_up.created_on.replace(tzinfo=None)  # read as UTC, not local time
    assert await ids_of(created_lt=naive) == [str(told.enrollment.id)]


async def check_executions(pool: asyncpg.Pool, told: Story) -> None:
    async def listed(**filters: Any) -> list[dict[str, Any]]:
        return (await queries.list_executions(pool, PLATFORM, **filters))[0]

    enrollment = await listed(operation_id=told.enrollment.id)
    assert sorted((e["participant_code"], e["status"]) for e in enrollment) == [
        ("P1", "settled"),
        ("P2", "settled"),
        ("P3", "settled"),
        (INELIGIBLE, "rejected"),
    ]
    (ineligible,) = await listed(participant_code=INELIGIBLE)
    assert (ineligible["trader_id"], ineligible["account_label"]) == ("", "")
    assert ineligible["status_reasons"] == ["participant_ineligible"]
    assert ineligible["strategy_id"] == str(told.strategy.id)
    rejected = await listed(status="rejected", strategy_id=told.strategy.id)
    assert sorted(e["participant_code"] for e in rejected) == sorted(
        [INELIGIBLE, "P2", NEWCOMER, "P3"]
    )
    p1 = told.trader("P1")
    mine = await listed(trader_id=p1.id)
    assert [e["operation_id"] for e in mine] == [str(told.top_up.id), str(told.enrollment.id)]
    settled = mine[0]
    assert {i["status"] for i in settled["instructions"]} == {"filled"}
    execution_id = ids.execution_id(told.top_up.id, "P1")
    assert await queries.get_execution(pool, PLATFORM, execution_id) == settled
    assert await queries.get_execution(pool, OTHER, execution_id) is None
    assert [e["participant_code"] for e in (await queries.list_executions(pool, OTHER))[0]] == [
        "P1"
    ]


async def test_the_writer_on_the_engine_bus_follows_the_pipeline_and_equals_a_rebuild(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    settings = Settings(database_url=fresh_database_url, chunk_size=2)
    bus = InProcessBus()
    # A schema of its own, so this consumer is the only one writing it (the Engine may run
    # its own projection of the same events into `public`).
    await ensure_scratch(pool, "observed")
    writer = ProjectionWriter(pool, "observed", name="it-observed")
    bus.subscribe_batch(Topics(settings.topic_prefix).events, "it-observed", writer.handle_many)
    async with Engine(settings, fresh_database_url, ["all"], bus=bus) as engine:
        trading = engine.trading
        codes = ["E1", "E2", "E3"]
        await engine.call(trading.register_participants, PLATFORM, codes)
        await engine.call(trading.deposit_float, PLATFORM, "USD", Decimal("10000.00"), "IT")
        strategy, _ = await engine.call(
            trading.create_strategy, PLATFORM, uuid4(), {"quoted_currency": "USD"}
        )
        body = {"allocations": BLUE_CHIP, "participants": funded([*codes, INELIGIBLE], "50.00")}
        enrolled, _ = await engine.call(
            trading.request_operation,
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.ENROLLMENT,
            body,
        )
        await wait_terminal(trading, enrolled.id)
        await rebuild(pool, trading, "scratch")
        expected = await snapshot(pool, "scratch")
        deadline = time.monotonic() + 30
        while (live := await snapshot(pool, "observed")) != expected:
            assert time.monotonic() < deadline, "the live projection did not catch up"
            await asyncio.sleep(0.1)
        assert live == expected
    operation = await queries.get_operation(pool, PLATFORM, enrolled.id, schema="observed")
    assert operation is not None and operation["status"] == "settled"
    executions, _, _, _ = await queries.list_executions(
        pool, PLATFORM, operation_id=enrolled.id, schema="observed"
    )
    assert sorted((e["participant_code"], e["status"]) for e in executions) == [
        ("E1", "settled"),
        ("E2", "settled"),
        ("E3", "settled"),
        (INELIGIBLE, "rejected"),
    ]
    traders, _, _, _ = await queries.list_traders(
        pool, PLATFORM, strategy_id=strategy.id, schema="observed"
    )
    assert len(traders) == 3


async def test_batches_of_a_partition_give_the_rows_of_a_rebuild_even_when_redelivered(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    """The batch handler applies consecutive deliveries in one transaction; a batch delivered
    again, or overlapping one already applied, changes nothing."""
    app, _told, _ = await asyncio.to_thread(real_story, fresh_database_url)
    try:
        history = await asyncio.to_thread(messages, app)
        writer = ProjectionWriter(pool)
        by_partition = Partitions().deliver(history)

        async def drain(deliveries: list[Delivery]) -> None:
            for start in range(0, len(deliveries), 7):
                batch = deliveries[start : start + 7]
                await writer.handle_many(batch)
                await writer.handle_many(batch)  # redelivered whole
                await writer.handle_many(deliveries[max(0, start - 3) : start + 2])  # overlap

        await asyncio.gather(*(drain(d) for d in by_partition.values()))
        await rebuild(pool, app, "scratch")
        assert await snapshot(pool, "public") == await snapshot(pool, "scratch")
        garbage = Delivery(TOPIC, b"not an event", "k", {}, 0, 10_000)
        await writer.handle_many([garbage])  # logged and passed over, never retried forever
    finally:
        await asyncio.to_thread(app.close)


async def stored_rows(pool: asyncpg.Pool) -> dict[Any, Any]:
    """Every read-model row as the writer loads it (`RowCodec.row`), by key."""
    rows = {}
    for name, kind in ROW_TYPES.items():
        records = await pool.fetch(f"SELECT {kind.TABLE.selected()} FROM public.{name}")
        rows.update({(name, row.id): row for row in rows_from_records(kind, records)})
    return rows


async def test_a_partition_in_one_batch_writes_each_row_once_as_the_fold_leaves_it(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    """A row changed many times in a batch is in its upsert once, in its last state (ON
    CONFLICT cannot change a row twice in one statement), and every column comes back from
    the table as the fold left it: UUIDs, times, exact decimals, jsonb and text[]."""
    app, _told, _ = await asyncio.to_thread(real_story, fresh_database_url)
    try:
        history = await asyncio.to_thread(messages, app)
        writer = ProjectionWriter(pool)
        whole = Partitions().deliver(history)
        assert max(len(d) for d in whole.values()) > 20  # rows change many times per batch
        await asyncio.gather(*(writer.handle_many(d) for d in whole.values()))

        folded = Projection()
        for event in history:
            folded.apply(event)
        expected = {key: row for key, row in folded.rows.items() if row is not None}
        assert await stored_rows(pool) == expected  # written and read back unchanged

        await rebuild(pool, app, "scratch", batch_size=1)
        assert await snapshot(pool, "public") == await snapshot(pool, "scratch")
    finally:
        await asyncio.to_thread(app.close)
