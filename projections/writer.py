"""The projection consumer: one delivery's row changes and its offset, in ONE transaction.

`Projection` is the pure part: it folds events into the rows they read and write, with no
I/O, so unit tests drive it directly. `ProjectionWriter` loads the rows a batch reads, folds
the batch, upserts what changed (only forward: see `projections.schema`) and, for a bus
delivery, records the consumed offset in the same transaction, so a crash or a redelivery
can neither lose nor double an event.

Offsets: a delivery at or below the stored offset of its partition is skipped, unless its
event comes later in the relay's publish order than any this partition has applied. That
exception exists because the embedded bus numbers its offsets from 0 again after a restart
(and a re-created Kafka topic does the same), while the publish order only grows; a genuine
redelivery is at or below both. The publish order is (transaction, position)
(`infra.bus.outbox.publish_order`), not the event's `position` alone: the relay publishes in
log order, where a later event may have a lower position. Row versions make a replay
harmless either way.

Cross-stream reads: a chunk's rejected Executions read their Operation's row, and that
Operation's `Requested` completes them if it is applied later. The two run on different
partitions, so both take a transaction-scoped advisory lock on the Operation first: one
then always sees the other's commit.
"""

from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from pydantic import ValidationError

from infra.bus.messages import DomainEventMessage
from infra.bus.outbox import publish_order
from infra.eventstore.notification_log import START, LogPosition
from projections import executions, operations, poisoned, prices, strategies, traders
from projections.executions import backfill_sql
from projections.operations import OPERATIONS
from projections.poisoned import Origin, Source
from projections.schema import DEFAULT_SCHEMA, Key, Row, codec, quoted, rows_from_records

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from uuid import UUID

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    from infra.bus import Delivery

    Connection = PoolConnectionProxy[asyncpg.Record]

log = structlog.get_logger("projections.writer")

#: Every read model, in the order an event is applied to them.
MODELS: tuple[ModuleType, ...] = (strategies, operations, prices, traders, executions)
ROW_TYPES: dict[str, type[Any]] = {
    kind.TABLE.name: kind
    for kind in (
        strategies.StrategyRow,
        traders.TraderRow,
        operations.OperationRow,
        executions.ChunkRow,
        executions.ExecutionRow,
        prices.PriceRow,
    )
}
#: Events whose `needs` depend on rows they read first, asked again until all are known.
NEEDS_FROM_ROWS = executions.NEEDS_FROM_ROWS | prices.NEEDS_FROM_ROWS
DEFAULT_NAME = "read-models"
#: The `projection_offsets` topic under which a log-fed writer (`projections.follower`) keeps
#: how far it applied the event store's log: partition 0, its position as (tx_id, position).
LOG_TOPIC = "log"


@lru_cache(maxsize=256)
def models_for(aggregate_type: str, event_type: str) -> tuple[ModuleType, ...]:
    """The models an event of this kind may read or change, in `MODELS` order: asked once
    per kind (each says with `handles`), so the fold calls only those per event."""
    return tuple(m for m in MODELS if m.handles(aggregate_type, event_type))


#: An event to apply and where it was consumed.
Item = tuple[DomainEventMessage, Origin]


class Projection:
    """The rows a batch of events reads and writes, in memory; `None` means "no such row".

    Rows not loaded read as absent, so a Projection fed a whole history from empty is the
    read models themselves (this is how the unit tests use it).
    """

    def __init__(self) -> None:
        self.rows: dict[Key, Any] = {}
        self.dirty: dict[Key, Any] = {}
        self.backfills: list[executions.Backfill] = []
        #: What the last `apply` changed, and those rows as they were before it (webhooks
        #: turn each event's own changes into notifications, several events per batch).
        self.last_changed: dict[Key, Any] = {}
        self.last_before: dict[Key, Any] = {}

    def get(self, key: Key) -> Any:
        return self.rows.get(key)

    def missing(self, event: DomainEventMessage) -> set[Key]:
        """The rows `event` reads that are not known yet (absent rows are known as None)."""
        models = models_for(event.aggregate_type, event.type)
        return {key for m in models for key in m.needs(event, self) if key not in self.rows}

    def know(self, keys: Iterable[Key], found: Iterable[Row]) -> None:
        """`keys` were looked for and `found` is what exists of them (the rest is absent)."""
        self.rows.update(dict.fromkeys(keys))
        for row in found:
            self.rows[(row.TABLE.name, row.id)] = row

    def apply(self, event: DomainEventMessage) -> list[Any]:
        """Fold one event; returns the rows it changed (empty when it was already applied)."""
        changed = []
        self.last_changed, self.last_before = {}, {}
        for model in models_for(event.aggregate_type, event.type):
            for row in model.changes(event, self):
                key = (row.TABLE.name, row.id)
                self.last_before.setdefault(key, self.rows.get(key))
                self.rows[key] = self.dirty[key] = self.last_changed[key] = row
                changed.append(row)
        for backfill in executions.backfills(event):
            self._complete(backfill)
            self.backfills.append(backfill)
        return changed

    def _complete(self, backfill: executions.Backfill) -> None:
        """The backfill's effect on rows held here (its SQL covers the rows already stored)."""
        for key, row in list(self.rows.items()):
            done = executions.completed(row, backfill)
            if done is not None:
                self.rows[key] = done
                if key in self.dirty:
                    self.dirty[key] = done
                if key in self.last_changed:
                    self.last_changed[key] = done


class Observation(Protocol):
    """What a `Notifier` makes of one transaction's events (webhooks: their notifications)."""

    def observe(self, event: DomainEventMessage, state: Projection) -> None:
        """Called after each event is folded: `state.last_changed` is what it changed."""

    async def finish(self, connection: Any) -> None:
        """Write what was observed, in the writer's transaction, before it commits."""


class Notifier(Protocol):
    async def begin(self, connection: Any) -> Observation: ...

    def committed(self, observation: Observation) -> None:
        """After the commit: wake whoever acts on what was written."""


class ProjectionWriter:
    """Applies `strategies.events` to the read models of one schema.

    With a `notifier` (the live read models, see `workers.webhooks.WebhookRecorder`), each
    transaction also records what its events announce, so a notification is never about a
    state the API cannot show yet, and a replayed event, which changes no row, announces
    nothing twice.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str = DEFAULT_SCHEMA,
        *,
        name: str = DEFAULT_NAME,
        notifier: Notifier | None = None,
    ) -> None:
        quoted(schema)  # refuse a bad schema name now, not at the first event
        self.pool = pool
        self.schema = schema
        self.name = name
        self.notifier = notifier

    async def handle_many(self, deliveries: list[Delivery]) -> None:
        """The batch handler: consecutive deliveries of one partition, applied together with
        their offset in ONE transaction (the per-event transaction was the read side's cost).
        A delivery already applied (by offset or log position) is skipped; one the projection
        cannot apply is recorded as poisoned and passed over (`projections.poisoned`)."""
        last = deliveries[-1]
        async with self.pool.acquire() as connection, connection.transaction():
            stored = await connection.fetchrow(
                f"""SELECT "offset", tx_id, position
                    FROM {quoted(self.schema)}.projection_offsets
                    WHERE projection = $1 AND topic = $2 AND partition = $3 FOR UPDATE""",
                self.name,
                last.topic,
                last.partition,
            )
            offset, applied = -1, (0, 0)
            if stored:
                offset, applied = stored["offset"], (stored["tx_id"], stored["position"])
            fresh: list[Item] = []
            furthest = applied
            for delivery in deliveries:
                try:
                    message = DomainEventMessage.model_validate_json(delivery.value)
                    order = publish_order(delivery.headers, message)
                except (ValidationError, ValueError) as unreadable:
                    if delivery.offset > offset:
                        await poisoned.record_unreadable(
                            connection,
                            self.schema,
                            self.name,
                            delivery.value,
                            delivery,
                            unreadable,
                        )
                    continue
                if delivery.offset > offset or order > applied:
                    fresh.append((message, delivery))
                    furthest = max(furthest, order)
            observations = await self._apply_guarded(connection, fresh, again=False)
            await self._advance(connection, last, furthest)
        self.committed(*observations)
        log.debug("projection.applied_batch", records=len(deliveries), applied=len(fresh))

    async def apply_many(self, messages: Sequence[DomainEventMessage]) -> None:
        """Apply events in order, in one transaction, without offset bookkeeping (a rebuild);
        one the projection cannot apply is recorded as poisoned."""
        async with self.pool.acquire() as connection, connection.transaction():
            items: list[Item] = [(m, Source()) for m in messages]
            observations = await self._apply_guarded(connection, items, again=True)
        self.committed(*observations)

    async def apply_logged(
        self, items: Sequence[tuple[DomainEventMessage, LogPosition]]
    ) -> LogPosition:
        """Apply events read from the log in log order, with how far that takes the read
        models, in ONE transaction; events at or before the recorded position (a batch read
        twice, by a restarted or a second follower) are skipped. Returns the position now
        recorded. The row lock on the position serialises two followers."""
        async with self.pool.acquire() as connection, connection.transaction():
            applied = await self._log_position(connection, lock=True)
            source = Source(LOG_TOPIC)
            fresh: list[Item] = [(m, source) for m, at in items if at > applied]
            observations = await self._apply_guarded(connection, fresh, again=False)
            furthest = max(applied, items[-1][1]) if items else applied
            await connection.execute(
                f"""UPDATE {quoted(self.schema)}.projection_offsets
                    SET "offset" = $3, tx_id = $2, position = $3
                    WHERE projection = $1 AND topic = '{LOG_TOPIC}' AND partition = 0""",
                self.name,
                furthest.transaction,
                furthest.notification_id,
            )
        self.committed(*observations)
        log.debug("projection.applied_log", events=len(items), applied=len(fresh))
        return furthest

    async def log_position(self) -> LogPosition:
        """How far a log-fed writer applied the log (the start when it never did)."""
        async with self.pool.acquire() as connection:
            return await self._log_position(connection, lock=False)

    async def _log_position(self, connection: Connection, *, lock: bool) -> LogPosition:
        table = f"{quoted(self.schema)}.projection_offsets"
        if lock:  # a row to lock, even the first time
            await connection.execute(
                f"""INSERT INTO {table} (projection, topic, partition, "offset", tx_id, position)
                    VALUES ($1, '{LOG_TOPIC}', 0, 0, 0, 0) ON CONFLICT DO NOTHING""",
                self.name,
            )
        row = await connection.fetchrow(
            f"""SELECT tx_id, position FROM {table}
                WHERE projection = $1 AND topic = '{LOG_TOPIC}' AND partition = 0
                {"FOR UPDATE" if lock else ""}""",
            self.name,
        )
        return START if row is None else LogPosition(row["tx_id"], row["position"])

    def committed(self, *observations: Observation | None) -> None:
        if self.notifier is not None:
            for observation in observations:
                if observation is not None:
                    self.notifier.committed(observation)

    async def _apply_guarded(
        self, connection: Connection, items: list[Item], *, again: bool
    ) -> list[Observation | None]:
        """Apply `items` in one savepoint; when one of them is at fault, apply them one by
        one instead, recording the faulty one. Events of a stream with an unresolved
        poisoned event go one by one from the start (see `isolated` for `again`)."""
        if not items:
            return []
        blocked = await poisoned.open_positions(
            connection, self.schema, self.name, {m.aggregate_id for m, _ in items}
        )
        clear, rest = items, []
        if blocked:
            clear = [(m, s) for m, s in items if m.aggregate_id not in blocked]
            rest = [(m, s) for m, s in items if m.aggregate_id in blocked]
        observations: list[Observation | None] = []
        if clear:
            try:
                async with connection.transaction():
                    _, observation = await self._apply(connection, [m for m, _ in clear])
                observations.append(observation)
            except Exception as error:
                if not poisoned.is_poisonous(error):
                    raise
                log.warning("projection.isolating", events=len(clear), error=repr(error))
                rest = items  # across streams, order does not matter; within one it is kept
        return observations + await self.isolated(connection, rest, blocked, again=again)

    async def isolated(
        self,
        connection: Connection,
        items: list[Item],
        blocked: dict[UUID, set[int]],
        *,
        again: bool = True,
    ) -> list[Observation | None]:
        """One savepoint per event: an event at fault costs its own rows, and the later
        events of its stream are parked behind it (applied past it, they would fold on rows
        it never wrote); an event already recorded that now applies is resolved. Without
        `again` (the live consumer), an event already recorded is left as it is: only a
        retry or a rebuild tries it again, so a redelivery changes nothing."""
        observations: list[Observation | None] = []
        for message, source in items:
            pending = blocked.setdefault(message.aggregate_id, set())
            if not again and message.position in pending:
                continue
            if any(p < message.position for p in pending):
                pending.add(message.position)
                await poisoned.record(connection, self.schema, self.name, message, source, None)
                continue
            try:
                async with connection.transaction():
                    _, observation = await self._apply(connection, [message])
            except Exception as error:
                if not poisoned.is_poisonous(error):
                    raise
                pending.add(message.position)
                await poisoned.record(connection, self.schema, self.name, message, source, error)
                continue
            observations.append(observation)
            if message.position in pending:
                pending.discard(message.position)
                key = f"position:{message.position}"
                await poisoned.resolve(connection, self.schema, self.name, [key])
                log.info("projection.poison_resolved", position=message.position)
        return observations

    async def _advance(
        self, connection: Connection, delivery: Delivery, furthest: tuple[int, int]
    ) -> bool:
        """Record the offset and the furthest event applied (in publish order); False when
        the delivery was already applied. The row lock it takes serialises two consumers
        that briefly share a partition during a rebalance."""
        later = "(o.tx_id, o.position) < (EXCLUDED.tx_id, EXCLUDED.position)"
        advanced = await connection.fetchval(
            f"""INSERT INTO {quoted(self.schema)}.projection_offsets AS o
                    (projection, topic, partition, "offset", tx_id, position)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (projection, topic, partition) DO UPDATE
                SET "offset" = EXCLUDED."offset",
                    tx_id = CASE WHEN {later} THEN EXCLUDED.tx_id ELSE o.tx_id END,
                    position = CASE WHEN {later} THEN EXCLUDED.position ELSE o.position END
                WHERE o."offset" < EXCLUDED."offset" OR {later}
                RETURNING true""",
            self.name,
            delivery.topic,
            delivery.partition,
            delivery.offset,
            *furthest,
        )
        return bool(advanced)

    async def _apply(
        self, connection: Connection, messages: Sequence[DomainEventMessage]
    ) -> tuple[int, Observation | None]:
        observation = await self.notifier.begin(connection) if self.notifier else None
        state = Projection()
        wanted: set[Key] = set()
        for message in messages:
            wanted |= state.missing(message)
        await self._load(connection, state, wanted)
        changed = 0
        for message in messages:
            if message.type in NEEDS_FROM_ROWS:  # a chunk's row names its Operation, ...
                while more := state.missing(message):
                    await self._load(connection, state, more)
            changed += len(state.apply(message))
            if observation is not None:
                observation.observe(message, state)
        await self._flush(connection, state)
        if observation is not None:
            await observation.finish(connection)
        return changed, observation

    async def _load(self, connection: Connection, state: Projection, keys: set[Key]) -> None:
        by_table: dict[str, list[Key]] = defaultdict(list)
        for key in keys:
            by_table[key[0]].append(key)
        for table, wanted in by_table.items():
            ids = [row_id for _, row_id in wanted]
            if table == OPERATIONS.name:
                await self._lock_operations(connection, ids)
            kind = ROW_TYPES[table]
            records = await connection.fetch(kind.TABLE.select_by_ids(self.schema), ids)
            state.know(wanted, rows_from_records(kind, records))

    async def _lock_operations(self, connection: Connection, ids: Iterable[UUID]) -> None:
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || id::text, 0))"
            " FROM unnest($2::uuid[]) AS id ORDER BY id",
            f"projections:{self.schema}",
            sorted(set(ids)),
        )

    async def _flush(self, connection: Connection, state: Projection) -> None:
        """One upsert per table for the whole batch (each row once: `dirty` holds its last
        state)."""
        by_table: dict[str, list[Any]] = defaultdict(list)
        for row in state.dirty.values():
            by_table[row.TABLE.name].append(row)
        for table, rows in by_table.items():
            kind = ROW_TYPES[table]
            await connection.execute(kind.TABLE.upsert(self.schema), codec(kind).batch(rows))
        if state.backfills:
            await self._lock_operations(connection, (b.operation_id for b in state.backfills))
            await connection.executemany(
                backfill_sql(self.schema), [b.args() for b in state.backfills]
            )
