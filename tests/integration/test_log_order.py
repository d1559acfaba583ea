"""The event store without a table lock: saves of different aggregates hold their transactions
at the same time, and the outbox relay still publishes every committed event once, in log
order (writing transaction, then notification id), passing over nothing a later commit fills.
Also: a store made before transaction ids were recorded, and the read models' restart rule."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import asyncpg
import psycopg
import pytest

from infra.bootstrap.schema import migrate_database
from infra.bus import Delivery
from infra.bus.memory import InProcessBus
from infra.bus.messages import DomainEventMessage
from infra.bus.outbox import TRANSACTION_HEADER, event_message
from infra.bus.topic_names import DEFAULT as TOPICS
from infra.eventstore.notification_log import START, ApplicationNotificationLog
from infra.eventstore.positions import PostgresPositions
from infra.eventstore.store import PostgresTrading
from projections import poisoned, queries
from projections.writer import ProjectionWriter
from workers.relay import OutboxRelay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

pytestmark = pytest.mark.integration

PLATFORM = "platform-a"
BODY = {"quoted_currency": "USD"}
#: A bound on every wait, never a speed assertion: a save takes milliseconds.
WAIT = 20.0
_HOLD_KEY = 0x6C6F_675F_6F72_6472  # "log_ordr": the advisory lock a paused save waits on


class Paused:
    """Holds the next save of `app` inside its transaction until `release()`: after its
    insert, or (`before_insert`) once the transaction has its id but before its events get
    theirs, as a save that upserts the roster first. The transaction waits on an advisory
    lock this object holds, so its session is busy, not idle (idle ones are cut after 5 s)."""

    def __init__(
        self, app: PostgresTrading, url: str, monkeypatch: pytest.MonkeyPatch, *, before: bool
    ) -> None:
        self.holder = psycopg.connect(url, autocommit=True)
        self.holder.execute("SELECT pg_advisory_lock(%s)", (_HOLD_KEY,))
        self.reached = threading.Event()
        recorder: Any = app.recorder
        insert = recorder._insert_stored_events

        def paused(curs: psycopg.Cursor[Any], stored_events: Any, **kwargs: Any) -> None:
            if self.reached.is_set():
                insert(curs, stored_events, **kwargs)
                return
            with curs.connection.cursor() as other:  # `curs` keeps the insert's RETURNING
                if before:
                    other.execute("SELECT pg_current_xact_id()")
                else:
                    insert(curs, stored_events, **kwargs)
                self.reached.set()
                other.execute("SELECT pg_advisory_xact_lock(%s)", (_HOLD_KEY,))
            if before:
                insert(curs, stored_events, **kwargs)

        monkeypatch.setattr(recorder, "_insert_stored_events", paused)

    def release(self) -> None:
        if not self.holder.closed:
            self.holder.close()  # ends the session and its advisory lock


@pytest.fixture
def app(fresh_database_url: str) -> Iterator[PostgresTrading]:
    with PostgresTrading(fresh_database_url) as trading:
        yield trading


@asynccontextmanager
async def relaying(
    app: PostgresTrading, url: str, writer: ProjectionWriter | None = None, **relay: Any
) -> AsyncIterator[tuple[OutboxRelay, InProcessBus, list[Delivery]]]:
    """An outbox relay from the saved position onto a fresh in-process bus (one partition, so
    every event shares one offset sequence), and what a subscriber of the events topic has
    received; with `writer`, the read models consume the topic too."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    positions = PostgresPositions(pool)
    bus = InProcessBus(partitions=1)
    received: list[Delivery] = []

    async def receive(delivery: Delivery) -> None:
        received.append(delivery)

    bus.subscribe(TOPICS.events, "test", receive)
    if writer is not None:
        bus.subscribe_batch(TOPICS.events, "read-models", writer.handle_many)
    await bus.start()
    outbox = OutboxRelay(
        ApplicationNotificationLog(app), bus, positions, delivered=bus.idle, **relay
    )
    await outbox.resume()
    try:
        yield outbox, bus, received
    finally:
        await bus.stop()
        await pool.close()


async def publish(relay: OutboxRelay, bus: InProcessBus) -> int:
    """One batch, handled by every subscriber, with the position saved."""
    published = await relay.run_once()
    for _ in range(int(WAIT * 100)):
        if bus.idle():
            break
        await asyncio.sleep(0.01)
    await relay.save_if_durable()
    return published


def events(deliveries: list[Delivery]) -> list[tuple[int, DomainEventMessage]]:
    return [
        (int(d.headers[TRANSACTION_HEADER]), DomainEventMessage.model_validate_json(d.value))
        for d in deliveries
    ]


async def overlapping(
    app: PostgresTrading,
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    before: bool,
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> tuple[UUID, UUID]:
    """Two Strategies created at once: the first save is paused (`Paused`), the second runs
    to its end meanwhile (a bounded wait: with a table lock it waits for the first), then
    `meanwhile` runs while the first is still open. Returns (first, second)."""
    paused = Paused(app, url, monkeypatch, before=before)
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(2) as threads:
        try:
            first = loop.run_in_executor(threads, strategy_of, app)
            assert await asyncio.to_thread(paused.reached.wait, WAIT)
            later = await asyncio.wait_for(loop.run_in_executor(threads, strategy_of, app), WAIT)
            assert not first.done()  # both transactions were open at once
            if meanwhile is not None:
                await meanwhile()
        finally:
            paused.release()
        return await first, later


def strategy_of(app: PostgresTrading) -> UUID:
    strategy, _ = app.create_strategy(PLATFORM, uuid4(), BODY)
    return strategy.id


def transactions(url: str) -> dict[UUID, tuple[int, list[int]]]:
    """Aggregate -> (the transaction that wrote it, its notification ids)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT originator_id, tx_id::text, array_agg(notification_id ORDER BY notification_id)"
            " FROM trading_events GROUP BY 1, 2"
        ).fetchall()
    return {row[0]: (int(row[1]), row[2]) for row in rows}


async def test_saves_of_two_aggregates_overlap_and_the_relay_skips_neither(
    app: PostgresTrading, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first save inserts and holds its transaction open; the second inserts and commits
    meanwhile (with a table lock it waited for the first). Its ids are above the first's, so
    a reader tailing ids would pass the first's ids now and never see them; the relay instead
    waits for the first to end, then publishes both, the first's transaction first."""
    async with relaying(app, fresh_database_url) as (relay, bus, received):

        async def nothing_passes_the_open_transaction() -> None:
            assert await publish(relay, bus) == 0

        earlier, later = await overlapping(
            app,
            fresh_database_url,
            monkeypatch,
            before=False,
            meanwhile=nothing_passes_the_open_transaction,
        )
        written = transactions(fresh_database_url)
        assert written[earlier][0] < written[later][0]
        assert max(written[earlier][1]) < min(written[later][1])  # the gap an id reader skips

        while await publish(relay, bus):
            pass

    published = events(received)
    assert [(t, m.position) for t, m in published] == sorted(
        (tx, i) for tx, ids in written.values() for i in ids
    )  # every committed event once, in log order
    assert [m.aggregate_id for _, m in published if m.aggregate_type == "Strategy"] == [
        earlier,
        later,
    ]
    for aggregate in written:
        versions = [m.aggregate_version for _, m in published if m.aggregate_id == aggregate]
        assert versions == sorted(versions)


async def test_an_event_published_later_with_a_lower_position_is_projected_after_a_restart(
    app: PostgresTrading, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first transaction takes its id, the second then writes and commits, the first writes
    last: it is published first with the higher positions. The in-process bus numbers its
    offsets from 0 again after a restart, so the second's events come at offsets the read
    models already passed, with positions below what they applied: only the publish order
    (transaction, position) tells they are new."""
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=4)
    try:
        earlier, later = await overlapping(app, fresh_database_url, monkeypatch, before=True)
        written = transactions(fresh_database_url)
        assert written[earlier][0] < written[later][0]
        assert min(written[earlier][1]) > max(written[later][1])

        for run, relayed in ((1, earlier), (2, later)):  # two runs of the process
            batch = sum(len(ids) for tx, ids in written.values() if tx == written[relayed][0])
            writer = ProjectionWriter(pool)
            async with relaying(app, fresh_database_url, writer, batch_size=batch) as (
                relay,
                bus,
                _,
            ):
                assert await publish(relay, bus) == batch, run

        for strategy_id in (earlier, later):
            assert await queries.get_strategy(pool, PLATFORM, strategy_id) is not None
    finally:
        await pool.close()


async def test_a_store_made_before_transaction_ids_keeps_its_order_and_its_relay_position(
    fresh_database_url: str,
) -> None:
    """Rows written before the column existed read as transaction 0, so they come first and in
    id order, as an older relay published them; its saved position N resumes as (0, N)."""
    url = fresh_database_url
    with PostgresTrading(url) as older, psycopg.connect(url, autocommit=True) as conn:
        # As an older release left it, before migrations.
        conn.execute("ALTER TABLE trading_events DROP COLUMN tx_id")
        conn.execute("DROP TABLE relay_positions; DROP TABLE schema_migrations")
        conn.execute("CREATE TABLE relay_positions (name text PRIMARY KEY, position bigint)")
        for _ in range(4):
            strategy_of(older)
        old_ids = [n.id for n in older.recorder.select_notifications(start=1, limit=100)]
        relayed = old_ids[len(old_ids) // 2 - 1]
        conn.execute("INSERT INTO relay_positions VALUES ('outbox', %s)", (relayed,))

    await migrate_database(url)
    with PostgresTrading(url) as upgraded:
        for _ in range(2):
            strategy_of(upgraded)
        written = transactions(url)
        async with relaying(upgraded, url) as (relay, bus, received):
            assert relay.position == (0, relayed)
            while await publish(relay, bus):
                pass

    old_rows = [i for tx, ids in written.values() if tx == 0 for i in ids]
    assert sorted(old_rows) == old_ids
    new_rows = sorted((tx, i) for tx, ids in written.values() if tx for i in ids)
    assert [(t, m.position) for t, m in events(received)] == [
        *((0, i) for i in old_ids if i > relayed),
        *new_rows,
    ]


async def test_an_event_record_whose_transaction_header_is_garbled_is_recorded_as_unreadable(
    app: PostgresTrading, fresh_database_url: str
) -> None:
    bad, good = [await asyncio.to_thread(strategy_of, app) for _ in range(2)]
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=2)
    try:
        created = [
            (n, event_message(n.position, n.topic, n.aggregate_id, n.version, n.state))
            for n in await asyncio.to_thread(ApplicationNotificationLog(app).read, START, 100)
            if n.topic.endswith("Strategy.Created")
        ]
        deliveries = [
            Delivery(
                TOPICS.events,
                message.encode(),
                str(message.aggregate_id),
                {TRANSACTION_HEADER: "x1" if message.aggregate_id == bad else str(n.transaction)},
                0,
                offset,
            )
            for offset, (n, message) in enumerate(created)
        ]
        await ProjectionWriter(pool).handle_many(deliveries)
        assert await queries.get_strategy(pool, PLATFORM, bad) is None
        assert await queries.get_strategy(pool, PLATFORM, good) is not None
        assert await poisoned.count_unresolved(pool) == 1
    finally:
        await pool.close()
