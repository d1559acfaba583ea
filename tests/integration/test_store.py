"""PostgresTrading on a real PostgreSQL: batched loads, snapshots, and racing workers."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.application import project_aggregate
from eventsourcing.persistence import IntegrityError

from domain import ids
from domain.catalogue import DEFAULT_INSTRUMENTS
from domain.chunk import chunk_id
from domain.float_account import FloatAccount
from domain.reference import Catalogue
from domain.statuses import OperationStatus, OperationType
from domain.trader import Trader
from infra.bootstrap.schema import migrate_database
from infra.eventstore.store import PostgresTrading, retry_on_conflict
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    PRICES,
    check_all,
    funded,
    lock_and_fill,
    new_strategy,
    request,
    run,
    settle_all,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from domain.operation import Operation
    from domain.strategy import Strategy

pytestmark = pytest.mark.integration

CODES = [f"P{i}" for i in range(1, 8)]
FLOAT = Decimal("1000000.00")


class SnappyTrading(PostgresTrading):
    """Snapshots every other Trader event, so a short story crosses several snapshots."""

    name = "Trading"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Trader: 2,
        FloatAccount: 3,
        Catalogue: 50,
    }


class UnsnappedTrading(PostgresTrading):
    """No snapshot store at all: get_many reads events only."""

    name = "Trading"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {}


class RacingTrading(PostgresTrading):
    """Waits at `barrier` before its next save, so two workers both load stale state."""

    name = "Trading"
    barrier: threading.Barrier | None = None

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        barrier, self.barrier = self.barrier, None
        if barrier is not None:
            barrier.wait(timeout=30)
        return super().save(*objs, **kwargs)


def prepared(app: PostgresTrading) -> PostgresTrading:
    app.ensure_default_catalogue()
    app.deposit_float(PLATFORM, "USD", FLOAT, "PLATFORM-A-FLOAT")
    app.register_participants(PLATFORM, CODES)
    return app


@pytest.fixture
def app(fresh_database_url: str) -> Iterator[PostgresTrading]:
    with PostgresTrading(fresh_database_url, chunk_size=3) as trading:
        yield prepared(trading)


@pytest.fixture
def strategy(app: PostgresTrading) -> Strategy:
    return new_strategy(app)


def enrollment(codes: list[str]) -> dict[str, Any]:
    return {"allocations": BLUE_CHIP, "participants": funded(codes)}


def aggregate_ids(app: PostgresTrading, strategy: Strategy, operation: Operation) -> list[UUID]:
    return [
        strategy.id,
        operation.id,
        ids.CATALOGUE_ID,
        ids.float_account_id(PLATFORM, "USD"),
        *(chunk_id(operation.id, i) for i in range(operation.chunk_count)),
        *(ids.trader_id(strategy.id, c) for c in CODES),
        *(ids.participant_id(PLATFORM, c) for c in CODES),
    ]


def one_by_one(app: PostgresTrading, wanted: list[UUID]) -> dict[UUID, Any]:
    return {i: app.repository.get(i) for i in wanted}


def hold_counts(app: PostgresTrading, trader_ids: list[UUID]) -> Counter[UUID]:
    return Counter(
        trader_id
        for trader_id in trader_ids
        for event in app.events.get(trader_id)
        if isinstance(event, Trader.HoldPlaced)
    )


def race(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result(timeout=60) for f in [pool.submit(c) for c in calls]]


def test_an_enrollment_settles_and_another_instance_reloads_the_same_aggregates(
    app: PostgresTrading, strategy: Strategy, fresh_database_url: str
) -> None:
    operation = run(app, strategy, OperationType.ENROLLMENT, enrollment(CODES))
    assert operation.status is OperationStatus.SETTLED
    assert operation.chunk_count == 3
    wanted = aggregate_ids(app, strategy, operation)

    with PostgresTrading(fresh_database_url) as other:
        batched = other.get_many(wanted)
        assert batched == one_by_one(other, wanted) == one_by_one(app, wanted)
        other.deposit_float(PLATFORM, "USD", Decimal("1.00"), "TOP-UP")  # it can write too
    assert list(batched) == wanted
    assert batched[ids.float_account_id(PLATFORM, "USD")].balance == FLOAT - 7 * Decimal(1000)
    assert app._float(PLATFORM, "USD").balance == FLOAT - 7 * Decimal(1000) + 1


def test_get_many_leaves_out_ids_that_have_no_events(
    app: PostgresTrading, strategy: Strategy
) -> None:
    missing = [uuid4(), uuid4()]
    wanted = [missing[0], strategy.id, ids.CATALOGUE_ID, missing[1], strategy.id]

    found = app.get_many(wanted)

    assert list(found) == [strategy.id, ids.CATALOGUE_ID]
    assert found[strategy.id] == app.repository.get(strategy.id)
    assert app.get_many(missing) == {}
    assert app.get_many([]) == {}


def test_aggregates_past_a_snapshot_load_like_the_repository(fresh_database_url: str) -> None:
    with SnappyTrading(fresh_database_url, chunk_size=3) as app:
        strategy = new_strategy(prepared(app))
        run(app, strategy, OperationType.ENROLLMENT, enrollment(CODES))
        top_up = {"allocations": BLUE_CHIP, "participants": funded(CODES[:4], "500.00")}
        operation = run(app, strategy, OperationType.TOP_UP, top_up)
        assert operation.status is OperationStatus.SETTLED
        wanted = aggregate_ids(app, strategy, operation)
        p1 = ids.trader_id(strategy.id, "P1")
        assert app.snapshots is not None
        # Opened+HoldPlaced (v2), Settled, HoldPlaced (v4), Settled (v5).
        assert [s.originator_version for s in app.snapshots.get(p1)] == [2, 4]

        batched = app.get_many(wanted)

        assert batched == one_by_one(app, wanted)
        replayed = {i: project_aggregate(None, app.events.get(i)) for i in wanted}
        assert batched == replayed  # the batched snapshots hold exactly the recorded state
        assert batched[p1].version == 5


def test_get_many_reads_events_alone_when_snapshotting_is_off(fresh_database_url: str) -> None:
    with UnsnappedTrading(fresh_database_url, chunk_size=3) as app:
        assert app.snapshots is None
        strategy = new_strategy(prepared(app))
        operation = run(app, strategy, OperationType.ENROLLMENT, enrollment(CODES))
        wanted = [uuid4(), *aggregate_ids(app, strategy, operation)]

        batched = app.get_many(wanted)

        assert batched == one_by_one(app, wanted[1:])


def test_a_chunk_checked_by_two_workers_at_once_holds_each_trader_once(
    fresh_database_url: str,
) -> None:
    with (
        RacingTrading(fresh_database_url, chunk_size=10) as first,
        RacingTrading(fresh_database_url, chunk_size=10) as second,
    ):
        strategy = new_strategy(prepared(first))
        operation = request(first, strategy, OperationType.ENROLLMENT, enrollment(CODES))
        first.record_indicative_prices(operation.id, PRICES)
        first.barrier = second.barrier = threading.Barrier(2)
        conflicts: list[str] = []

        def check(app: PostgresTrading) -> Any:
            def attempt() -> Any:
                try:
                    return app.check_chunk(operation.id, 0)
                except IntegrityError as exc:
                    conflicts.append(f"{threading.current_thread().name}: {exc}")
                    raise

            return retry_on_conflict(attempt)

        results = race(lambda: check(first), lambda: check(second))

        # The loser may also lose the small write of the Operation's barrier: 1 or 2 retries.
        assert sorted(r.replayed for r in results) == [False, True]
        assert 1 <= len(conflicts) <= 2, conflicts
        traders = [ids.trader_id(strategy.id, c) for c in CODES]
        assert hold_counts(first, traders) == dict.fromkeys(traders, 1)
        assert first._float(PLATFORM, "USD").held == 0  # reserved by pricing, not the check
        first.reserve_float(operation.id)
        assert first._float(PLATFORM, "USD").held == 7 * Decimal(1000)
        lock_and_fill(first, operation.id)
        assert settle_all(second, operation.id).status is OperationStatus.SETTLED
        assert first._float(PLATFORM, "USD").balance == FLOAT - 7 * Decimal(1000)


def test_operations_racing_for_the_same_traders_hold_each_at_most_once(
    fresh_database_url: str,
) -> None:
    with (
        RacingTrading(fresh_database_url, chunk_size=10) as first,
        RacingTrading(fresh_database_url, chunk_size=10) as second,
    ):
        strategy = new_strategy(prepared(first))
        one = request(first, strategy, OperationType.ENROLLMENT, enrollment(CODES[:5]))
        two = request(first, strategy, OperationType.ENROLLMENT, enrollment(CODES[2:]))
        for op in (one, two):
            first.record_indicative_prices(op.id, PRICES)
        first.barrier = second.barrier = threading.Barrier(2)

        race(
            lambda: retry_on_conflict(lambda: first.check_chunk(one.id, 0)),
            lambda: retry_on_conflict(lambda: second.check_chunk(two.id, 0)),
        )

        decisions = {op.id: first.repository.get(chunk_id(op.id, 0)).decisions for op in (one, two)}
        for code in CODES[2:5]:
            trader = first.repository.get(ids.trader_id(strategy.id, code))
            loser = two.id if trader.held_by == one.id else one.id
            assert trader.held_by in (one.id, two.id)
            assert decisions[trader.held_by][code]["outcome"] == "approved"
            assert decisions[loser][code]["outcome"] == "rejected"
            assert decisions[loser][code]["reasons"] == "concurrent_hold"
        traders = [ids.trader_id(strategy.id, c) for c in CODES]
        assert hold_counts(first, traders) == dict.fromkeys(traders, 1)
        assert check_all(first, one.id).status is OperationStatus.PRICING
        assert check_all(first, two.id).status is OperationStatus.PRICING


def test_instances_starting_together_seed_the_catalogue_once_and_make_no_table(
    fresh_database_url: str,
) -> None:
    """The tables are the migrations' (`strategies db migrate`): a store only uses them."""

    def tables() -> list[tuple[str, ...]]:
        with psycopg.connect(fresh_database_url) as conn:
            return conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' ORDER BY table_name"
            ).fetchall()

    migrated = tables()
    barrier = threading.Barrier(4)

    def start() -> int:
        barrier.wait(timeout=30)
        with PostgresTrading(fresh_database_url) as app:
            return len(retry_on_conflict(app.ensure_default_catalogue).instruments)

    assert race(*[start] * 4) == [len(DEFAULT_INSTRUMENTS)] * 4
    assert ("trading_roster",) in migrated and tables() == migrated


def test_the_pool_keeps_as_many_connections_as_asked(fresh_database_url: str) -> None:
    with PostgresTrading(fresh_database_url, pool_size=3, max_overflow=2) as app:
        pool = app._events_recorder.datastore.pool
        assert (pool.min_size, pool.max_size) == (3, 5)


def test_a_conflict_is_retried_until_the_call_succeeds() -> None:
    outcomes: list[Any] = [IntegrityError("v1"), IntegrityError("v1"), "done"]

    def flaky() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return str(outcome)

    assert retry_on_conflict(flaky, base_delay=0) == "done"


def test_a_conflict_is_raised_after_the_last_attempt() -> None:
    calls: list[int] = []

    def conflicting() -> None:
        calls.append(1)
        raise IntegrityError("always")

    with pytest.raises(IntegrityError):
        retry_on_conflict(conflicting, attempts=3, base_delay=0)
    assert len(calls) == 3


def test_other_errors_are_not_retried() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("not a conflict")

    with pytest.raises(ValueError, match="not a conflict"):
        retry_on_conflict(broken)
    assert calls == [1]


def test_events_go_in_as_binary_arrays_and_read_back_byte_for_byte_in_log_order(
    app: PostgresTrading,
) -> None:
    from eventsourcing.persistence import IntegrityError, StoredEvent

    from infra.eventstore.event_recorder import ArrayInsertRecorder

    recorder = app.recorder
    assert isinstance(recorder, ArrayInsertRecorder)
    before = recorder.max_notification_id() or 0
    states = [bytes(range(256)) * 2, b"", b"\\x00'\"{}", "€ unicode".encode()]
    events = [
        StoredEvent(uuid4(), version, f"test:Topic{n}", state)
        for n, state in enumerate(states)
        for version in (1, 2)
    ]
    ids = recorder.insert_events(events)
    assert ids == list(range(before + 1, before + 1 + len(events)))
    stored = recorder.select_notifications(before + 1, limit=100)
    assert [(n.originator_id, n.originator_version, n.topic, n.state) for n in stored] == [
        (e.originator_id, e.originator_version, e.topic, e.state) for e in events
    ]
    with pytest.raises(IntegrityError):  # a version taken twice is still a conflict
        recorder.insert_events([events[0]])


@pytest.mark.timeout(120)
def test_a_save_of_a_hundred_thousand_events_goes_through_in_one_transaction(
    app: PostgresTrading,
) -> None:
    """Registering 100,000 participants is one ~40 MB insert; in psycopg's pipeline mode it
    deadlocked (server waiting in ClientRead, client in Pipeline.sync)."""
    from eventsourcing.persistence import StoredEvent

    state = b"s" * 400
    events = [StoredEvent(uuid4(), 1, "test:Big", state) for _ in range(100_000)]
    ids = app.recorder.insert_events(events)
    assert ids is not None and len(ids) == 100_000
    assert ids == list(range(ids[0], ids[0] + 100_000))


def test_batched_loads_survive_dropped_connections(
    app: PostgresTrading, strategy: Strategy, fresh_database_url: str
) -> None:
    """A database restart or pg_terminate_backend kills the pooled connections; the next
    load retries on a fresh one instead of failing the stage (or the API's read)."""
    import psycopg

    assert app.get_many([strategy.id])  # the pool holds a live connection now
    with psycopg.connect(fresh_database_url, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert dropped is not None and dropped[0] >= 1
    assert list(app.get_many([strategy.id])) == [strategy.id]


def test_the_roster_is_written_with_the_events_and_filled_from_history_once(
    fresh_database_url: str,
) -> None:
    """A scope read right after a save sees it (same transaction), a failed save leaves the
    roster as it was, and a store written before the roster existed gets it from history."""
    with PostgresTrading(fresh_database_url, chunk_size=3) as first:
        prepared(first)
        strategy = new_strategy(first)
        assert run(first, strategy, OperationType.ENROLLMENT, enrollment(CODES[:4])).status is (
            OperationStatus.SETTLED
        )
        first.update_trader(PLATFORM, uuid4(), ids.trader_id(strategy.id, "P2"), False)
        run(first, strategy, OperationType.LIQUIDATION, {"participants": ["P4"]})
        assert first.scope(strategy.id, auto_rebalance_only=True) == ["P1", "P3"]
        assert first.scope(strategy.id, auto_rebalance_only=False) == ["P1", "P2", "P3"]

        stale = first.find(ids.trader_id(strategy.id, "P1"), Trader)
        assert stale is not None
        first.update_trader(PLATFORM, uuid4(), stale.id, False)
        stale.change_auto_rebalance(True)  # no change against its stale state: nothing saved
        stale.change_auto_rebalance(False)
        with pytest.raises(IntegrityError):  # a stale writer loses: its roster row too
            first.save(stale)
        assert first.scope(strategy.id, auto_rebalance_only=True) == ["P3"]

    with psycopg.connect(fresh_database_url, autocommit=True) as conn:  # as an older store
        conn.execute("DROP TABLE trading_roster; DROP TABLE schema_migrations")
    asyncio.run(migrate_database(fresh_database_url))
    with PostgresTrading(fresh_database_url, chunk_size=3) as upgraded:
        assert upgraded.scope(strategy.id, auto_rebalance_only=True) == ["P3"]
        assert upgraded.scope(strategy.id, auto_rebalance_only=False) == ["P1", "P2", "P3"]
