"""Trading on PostgreSQL: chunk-sized loads in one round trip, and conflicts met by re-running.

eventsourcing loads one aggregate per `repository.get` (two queries when snapshotting is on),
which for a chunk of 500 Traders is ~1,000 round trips. `PostgresTrading.get_many` reads the
latest snapshot and the later events of every requested aggregate in one statement and rebuilds
them through the application's mapper, so cipher and compression settings still apply.
The snapshots eventsourcing takes after a save are batched the same way.

Two workers saving the same aggregate version make the save fail with `IntegrityError`; stage
methods are idempotent and reload their state, so `retry_on_conflict` simply runs them again.

Table names follow the application name: `trading_events` (with the `tx_id` and
`notification_id` that order the log the outbox relay tails) and `trading_snapshots`.
`PostgresTrading.name` stays "Trading" so that a plain `Trading(env)` reads the same tables.
"""

from __future__ import annotations

import functools
import random
import time
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

import psycopg
from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    InterfaceError,
    JSONTranscoder,
    Mapper,
    OperationalError,
    RecordConflictError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresAggregateRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier
from psycopg_pool import PoolTimeout

from domain.chunk import OperationChunk
from domain.roster import RosterEntry
from domain.services import DEFAULT_CHUNK_SIZE, Trading
from domain.statuses import TraderStatus
from domain.trader import Trader
from infra.eventstore.aggregate_cache import DEFAULT_CACHE_SIZE, AggregateCache, clone
from infra.eventstore.codec import TypedMapper
from infra.eventstore.persistence import eventsourcing_env
from infra.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from uuid import UUID

    from eventsourcing.postgres import PostgresDatastore
    from psycopg import Cursor

    from domain.requests import Limits

__all__ = [
    "DEFAULT_POOL_SIZE",
    "PostgresTrading",
    "retry_dropped_connections",
    "retry_on_conflict",
    "roster_table_name",
]

T = TypeVar("T")


class _EventsRecorder(Protocol):
    """What the store uses of its events recorder (`event_recorder.ArrayInsertRecorder`,
    selected by name in `persistence`): known by shape, since the recorder uses this
    module's helpers and importing it here would close a circle."""

    datastore: PostgresDatastore
    events_table_name: str

    def upsert_roster(self, curs: Cursor[Any], roster: Sequence[RosterEntry]) -> None: ...


A = TypeVar("A")
log = get_logger(__name__)

DEFAULT_POOL_SIZE = 10
_ALL_VERSIONS = 2**62  # "no upper bound" for the versioned load (originator_version is bigint)

# LATERAL subqueries pin the plan to one primary-key range scan per requested aggregate,
# bounded below by its snapshot: a plain join let the planner pick a hash join over a
# sequential scan of the whole events table once its row estimates went stale.
_LOAD_WITH_SNAPSHOTS = """
WITH wanted AS (
    SELECT w.n, w.id, w.upto, w.known, s.originator_version AS after, s.topic, s.state
    FROM unnest(%(ids)s::uuid[], %(upto)s::bigint[], %(known)s::bigint[])
        WITH ORDINALITY AS w(id, upto, known, n)
    LEFT JOIN LATERAL (
        SELECT originator_version, topic, state FROM {snapshots}
        WHERE w.known IS NULL AND originator_id = w.id AND originator_version <= w.upto
        ORDER BY originator_version DESC LIMIT 1
    ) s ON true
)
SELECT n, id AS originator_id, after AS originator_version, topic, state
FROM wanted WHERE after IS NOT NULL
UNION ALL
SELECT w.n, e.originator_id, e.originator_version, e.topic, e.state
FROM wanted w CROSS JOIN LATERAL (
    SELECT originator_id, originator_version, topic, state FROM {events}
    WHERE originator_id = w.id
        AND originator_version > COALESCE(w.known, w.after, 0) AND originator_version <= w.upto
) e
ORDER BY n, originator_version
"""

_SELECT_SCOPE = """
SELECT participant_code FROM {roster}
WHERE strategy_id = %s AND status = %s AND (auto_rebalance OR NOT %s)
ORDER BY participant_code
"""
_TRADERS_OPENED = "SELECT originator_id FROM {events} WHERE topic = %s AND originator_version = 1"
_TRADER_OPENED_TOPIC = f"{Trader.__module__}:Trader.Opened"
#: Traders loaded per round when an existing store's roster is filled from its history.
_BACKFILL_BATCH = 2_000

_LOAD_EVENTS_ONLY = """
SELECT w.n, e.originator_id, e.originator_version, e.topic, e.state
FROM unnest(%(ids)s::uuid[], %(upto)s::bigint[], %(known)s::bigint[])
    WITH ORDINALITY AS w(id, upto, known, n)
CROSS JOIN LATERAL (
    SELECT originator_id, originator_version, topic, state FROM {events}
    WHERE originator_id = w.id
        AND originator_version > COALESCE(w.known, 0) AND originator_version <= w.upto
) e
ORDER BY w.n, e.originator_version
"""


def retry_dropped_connections(fn: Callable[..., T]) -> Callable[..., T]:
    """Run `fn` again on a fresh connection while pooled connections turn out dead.

    After a database restart or pg_terminate_backend every pooled connection is dead and
    each fails once before the pool replaces it, so the budget is three times the default
    pool, `pool_size` plus `max_overflow` (a pre-ping on checkout took 20 s to get past
    ten). When the database cannot be reached at all (the pool times out), it fails at once:
    the caller answers 503 or the bus backs off, instead of waiting here for minutes.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> T:
        attempts = 3 * (DEFAULT_POOL_SIZE + DEFAULT_POOL_SIZE)
        for attempt in range(1, attempts + 1):
            try:
                return fn(*args, **kwargs)
            except (InterfaceError, OperationalError) as error:
                if isinstance(error.__cause__, PoolTimeout) or attempt == attempts:
                    raise
                time.sleep(0.05)
        raise AssertionError("unreachable")  # pragma: no cover

    return run


def retry_on_conflict(
    fn: Callable[[], T], *, attempts: int = 8, base_delay: float = 0.01, max_delay: float = 1.0
) -> T:
    """Run `fn` again while it loses an optimistic-concurrency race; re-raise after `attempts`.

    Only correct for calls that reload their state and are idempotent (every stage method):
    the rerun sees the winner's write and either redoes the work on fresh state or finds
    it done. Full jitter (a random wait up to base * 2**n, capped at `max_delay`) keeps
    racing workers from meeting again in lock-step. Synchronous on purpose: it runs in the
    worker's thread.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except RecordConflictError as exc:  # eventsourcing's IntegrityError derives from it
            if attempt == attempts:
                raise
            delay = random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1)))
            log.info("store.conflict_retried", attempt=attempt, delay=delay, error=str(exc))
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class PostgresTrading(Trading):
    """`Trading` persisted in PostgreSQL at `database_url`, with batched loads.

    One instance per process is shared by the threads that run its calls (the engine runs
    each stage call on a thread, off the event loop); a call holds one pooled connection at
    a time, so the pool should have about as many connections as threads: `pool_size` stay
    open, up to `max_overflow` more are opened under load.
    """

    name = "Trading"  # keep the table names (trading_events) of the plain service
    _load_sql: Composed

    def __init__(
        self,
        database_url: str,
        *,
        limits: Limits | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        pool_size: int = DEFAULT_POOL_SIZE,
        max_overflow: int = DEFAULT_POOL_SIZE,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if pool_size < 1 or max_overflow < 0:
            raise ValueError("pool_size must be at least 1 and max_overflow at least 0")
        env = eventsourcing_env(
            database_url, pool_size=pool_size, max_overflow=max_overflow, create_table=False
        )
        # A chunk holds 500 decisions (~0.5 MB decoded): 2,000 of them (a million Traders)
        # would outgrow any bound counted in aggregates, and they decode fast enough.
        self._cache = AggregateCache(cache_size, skipped=(OperationChunk,))
        super().__init__(env, limits=limits, chunk_size=chunk_size)
        self._load_sql = self._build_load_sql()
        schema = self._events_recorder.datastore.schema
        self._roster_table = Identifier(
            schema, roster_table_name(self._events_recorder.events_table_name)
        )
        self._scope_sql = SQL(_SELECT_SCOPE).format(roster=self._roster_table)

    def pool_connections(self) -> tuple[int, int]:
        """(in use, idle) connections of the event store's pool, for the metrics."""
        stats = self._events_recorder.datastore.pool.get_stats()
        idle = stats.get("pool_available", 0)
        return stats.get("pool_size", 0) - idle, idle

    # -- schema -------------------------------------------------------------------------
    def fill_roster(self) -> int:
        """Fill the roster from the history and return how many Traders it now holds: a
        store written before the roster existed gets every Trader its history implies (run
        by `strategies db migrate` when it has just created the roster over such a store).
        The upserts only move rows forward, so running it twice changes nothing."""
        datastore = self._events_recorder.datastore
        with datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            for entries in self._roster_from_history(conn):
                self._events_recorder.upsert_roster(curs, entries)
            found = conn.execute(SQL("SELECT count(*) AS n FROM {}").format(self._roster_table))
            row = found.fetchone()
        return int(row["n"]) if row else 0

    def _roster_from_history(self, conn: psycopg.Connection[Any]) -> Iterable[list[RosterEntry]]:
        events = Identifier(
            self._events_recorder.datastore.schema, self._events_recorder.events_table_name
        )
        with conn.cursor(row_factory=tuple_row) as curs:
            opened = curs.execute(
                SQL(_TRADERS_OPENED).format(events=events), (_TRADER_OPENED_TOPIC,)
            ).fetchall()
        ids = [row[0] for row in opened]
        for start in range(0, len(ids), _BACKFILL_BATCH):
            traders = self.get_many(ids[start : start + _BACKFILL_BATCH]).values()
            entries = [
                RosterEntry(
                    t.id,
                    t.strategy_id,
                    t.participant_code,
                    t.status.value,
                    t.auto_rebalance,
                    t.version,
                )
                for t in traders
                if isinstance(t, Trader) and t.status is not TraderStatus.PENDING
            ]
            if entries:
                log.info("store.roster_backfilled", traders=start + len(entries))
                yield entries

    def construct_mapper(self) -> Mapper[UUID]:
        """Events in the typed JSON form (`infra.eventstore.codec`), unless a cipher or a
        compressor is configured, which only eventsourcing's own mapper applies."""
        if self.env.get("CIPHER_TOPIC") or self.env.get("COMPRESSOR_TOPIC"):
            return super().construct_mapper()
        transcoder = self.construct_transcoder()
        assert isinstance(transcoder, JSONTranscoder), "eventsourcing's default transcoder"
        return TypedMapper(transcoder)

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """`Trading.save`, then the saved aggregates are remembered as written, so the next
        stage (or Operation) loading them in this process starts from there."""
        recordings = super().save(*objs, **kwargs)
        self._cache.keep(o for o in objs if isinstance(o, Aggregate))
        return recordings

    # -- the roster -----------------------------------------------------------------------
    def _roster_saved(self, entries: Sequence[RosterEntry]) -> None:
        """Nothing to remember in memory: the recorder wrote the entries with the events."""

    @retry_dropped_connections
    def scope(self, strategy_id: UUID, *, auto_rebalance_only: bool) -> list[str]:
        datastore = self._events_recorder.datastore
        # Rows as tuples, taken one by one: a million-Trader roster read as a list of dict
        # rows held ~230 MB at once, on top of the request that plans its Operation.
        with datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(
                self._scope_sql,
                (strategy_id, TraderStatus.ACTIVE.value, auto_rebalance_only),
                prepare=True,
            )
            return [code for (code,) in curs]

    def _recorders(self) -> list[PostgresAggregateRecorder]:
        recorders = [cast("PostgresAggregateRecorder", self.recorder)]
        if self._snapshots_recorder is not None:
            recorders.append(self._snapshots_recorder)
        return recorders

    @property
    def _events_recorder(self) -> _EventsRecorder:
        return cast("_EventsRecorder", self.recorder)

    @property
    def _snapshots_recorder(self) -> PostgresAggregateRecorder | None:
        if self.snapshots is None:
            return None
        return cast("PostgresAggregateRecorder", self.snapshots.recorder)

    # -- loading ------------------------------------------------------------------------
    def get_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]:
        """Load several aggregates in one query; missing ones are absent from the result.

        Equal to `repository.get` for each id: latest snapshot, then the later events, all
        mutated in version order, starting from this process's cached copy when it has one
        (eventsourcing's own aggregate cache stays off).
        """
        unique = list(dict.fromkeys(aggregate_ids))
        rebuilt = self._load_versions([(i, None) for i in unique])
        return {i: a for i, a in zip(unique, rebuilt, strict=True) if a is not None}

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        """`Trading.find` through the batched load: one query instead of eventsourcing's two
        (snapshot, then events), and the same patience with dropped connections."""
        aggregate = self.get_many([aggregate_id]).get(aggregate_id)
        return aggregate if isinstance(aggregate, kind) else None

    @retry_dropped_connections
    def _load_versions(self, wanted: Sequence[tuple[UUID, int | None]]) -> list[Any | None]:
        """Each (id, version or None for the latest) rebuilt, positionally; None if absent.

        A latest load starts from this process's cached copy when it has one, and reads only
        the events recorded after it (see `aggregate_cache`)."""
        if not wanted:
            return []
        cached = self._cache.versions(i for i, v in wanted if v is None)
        known = [cached[i].version if v is None and i in cached else None for i, v in wanted]
        params = {
            "ids": [aggregate_id for aggregate_id, _ in wanted],
            "upto": [_ALL_VERSIONS if v is None else v for _, v in wanted],
            "known": known,
        }
        found: list[Any | None] = [None] * len(wanted)
        datastore = self._events_recorder.datastore
        with datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._load_sql, params, prepare=True)
            rows = curs.fetchall()
        to_domain_event = self.mapper.to_domain_event
        changed = []
        for n, stored in _grouped(rows):
            base = known[n - 1]
            aggregate: Any = clone(cached[wanted[n - 1][0]]) if base is not None else None
            # What project_aggregate does, minus its isinstance check against a runtime
            # Protocol, which alone cost ~0.1 s per 1,000 aggregates on Python 3.11.
            for stored_event in stored:
                aggregate = cast("Any", to_domain_event(stored_event)).mutate(aggregate)
            found[n - 1] = aggregate
            if wanted[n - 1][1] is None:
                changed.append(aggregate)
        for index, (aggregate_id, _) in enumerate(wanted):
            if found[index] is None and known[index] is not None:  # cached and still current
                found[index] = clone(cached[aggregate_id])
        self._cache.keep(changed)
        return found

    def _build_load_sql(self) -> Composed:
        schema = self._events_recorder.datastore.schema
        events = Identifier(schema, self._events_recorder.events_table_name)
        snapshots_recorder = self._snapshots_recorder
        if snapshots_recorder is None:
            return SQL(_LOAD_EVENTS_ONLY).format(events=events)
        snapshots = Identifier(schema, snapshots_recorder.events_table_name)
        return SQL(_LOAD_WITH_SNAPSHOTS).format(events=events, snapshots=snapshots)

    # -- snapshots ----------------------------------------------------------------------
    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        """Take the snapshots a save made due with one load and one insert, not 3 per Trader.

        Overrides eventsourcing 9.5's private hook with the same rule: a snapshot of the
        recorded state at every event whose version is a multiple of the aggregate type's
        interval. Like upstream, it runs after the events are committed, outside their
        transaction: an error here is raised from `save()` although the events are stored,
        which is harmless for idempotent callers (a rerun finds the work done).
        """
        if self.snapshots is None or not self.snapshotting_intervals:
            return
        if self.snapshotting_projectors:
            super()._take_snapshots(processing_event)
            return
        due = list(_due_snapshots(processing_event, self.snapshotting_intervals))
        if not due:
            return
        # The saved aggregate is the state at its last event: no need to load that again.
        at_hand = [
            a
            for i, v in due
            if (a := processing_event.aggregates.get(i)) is not None and a.version == v
        ]
        ready = {(a.id, a.version) for a in at_hand}
        to_load = [(i, v) for i, v in due if (i, v) not in ready]
        snapshots = []
        for aggregate in [*at_hand, *self._load_versions(to_load)]:
            if aggregate is None:  # pragma: no cover - the events were just committed
                continue
            snapshot_class: Any = getattr(type(aggregate), "Snapshot", self.snapshot_class)
            snapshots.append(snapshot_class.take(aggregate))
        self.snapshots.put(snapshots)


def roster_table_name(events_table_name: str) -> str:
    """`trading_events` -> `trading_roster`: the roster lives beside its events table."""
    return events_table_name.removesuffix("_events") + "_roster"


def _due_snapshots(
    processing_event: ProcessingEvent[UUID], intervals: dict[type[Any], int]
) -> Iterable[tuple[UUID, int | None]]:
    for event in processing_event.events:
        aggregate = processing_event.aggregates.get(event.originator_id)
        interval = intervals.get(type(aggregate)) if aggregate is not None else None
        if interval and event.originator_version % interval == 0:
            yield event.originator_id, event.originator_version


def _grouped(rows: Iterable[dict[str, Any]]) -> Iterable[tuple[int, list[StoredEvent]]]:
    """Rows ordered by (n, version) -> (n, that aggregate's stored events in order)."""
    current: int | None = None
    events: list[StoredEvent] = []
    for row in rows:
        if row["n"] != current:
            if current is not None:
                yield current, events
            current, events = row["n"], []
        events.append(
            StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
        )
    if current is not None:
        yield current, events
