"""Poisoned events: what the read models could not apply, kept aside so the rest goes on.

An event the projection fails on for a reason of its own (a value PostgreSQL cannot store,
such as a NUL in a text, a constraint it breaks, a record that does not decode) would fail
the same way on every retry. Retrying it forever, as the bus does with any failing record,
stalled everything behind it on its partition: every platform's read models, the webhooks,
a SIGTERM drain. So the writer records it here, in the same transaction that moves the
partition's offset past it, and goes on. An outage (database away, a serialization failure,
a deadlock) is no fault of the event and is still retried as before (`is_poisonous`).

An aggregate's events are applied in order, each from the rows the previous one left, so
the later events of a poisoned event's stream are not applied past it: they are `parked`
behind it. A retry (`strategies projections poisoned --retry`) applies the stream again in
order from its first unresolved event; each event that applies becomes `resolved`. The key
of a row is the event's log position (the record's digest for one that does not decode),
so a redelivery, a replay or a rebuild meets the row it already has and counts nothing twice.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from uuid import UUID

import asyncpg
import structlog

from infra.transient import is_transient
from projections.schema import DEFAULT_SCHEMA, quoted

if TYPE_CHECKING:
    from collections.abc import Iterable

    from asyncpg.pool import PoolConnectionProxy

    from infra.bus.messages import DomainEventMessage

    Connection = PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]

log = structlog.get_logger("projections.poisoned")

POISONED, PARKED, RESOLVED = "poisoned", "parked", "resolved"
#: Longest error message kept (PostgreSQL's messages can quote a whole value).
MESSAGE_LIMIT = 500
#: SQLSTATE classes that are the data's fault: 22 data exception (an untranslatable
#: character, a number out of range), 23 integrity constraint, 54 program limit (an index
#: row too big). Every other class (40 serialization/deadlock, 53 resources, 57 shutdown,
#: 42 a missing table...) says the database or our deployment is wrong: retried, not blamed.
_EVENT_FAULTS = frozenset({"22", "23", "54"})
_LOCK_SALT = zlib.crc32(b"projections.poisoned")


class NotAppliedYetError(Exception):
    """Raised when an event needs another one, from another partition, applied first: the
    bus retries it, it is never poisoned."""


def is_poisonous(error: BaseException) -> bool:
    """Whether `error` is the event's own fault (it would fail again however often retried)
    rather than an outage or a not-yet."""
    if isinstance(error, asyncpg.InterfaceError) and isinstance(error, ValueError):
        return True  # asyncpg refused a value before sending it: a client-side data error
    if is_transient(error) or isinstance(error, NotAppliedYetError | OSError | MemoryError):
        return False
    if isinstance(error, asyncpg.PostgresError):
        return str(error.sqlstate or "")[:2] in _EVENT_FAULTS
    return isinstance(error, Exception)


class Origin(Protocol):
    """Where a record was consumed: the bus's `Delivery` itself (the consumer makes nothing
    per record for it), or a `Source`."""

    @property
    def topic(self) -> str | None: ...

    @property
    def partition(self) -> int | None: ...

    @property
    def offset(self) -> int | None: ...


class Source(NamedTuple):
    """Where a record was consumed, when that is no delivery: nothing for a rebuild, which
    reads the event store; a poisoned row's own for a retry."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


@dataclass(frozen=True)
class PoisonedEvent:
    id: int
    projection: str
    event_key: str
    position: int | None
    aggregate_id: UUID | None
    aggregate_version: int | None
    event_type: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    error_class: str
    error_message: str
    status: str
    attempts: int
    first_seen: datetime
    last_seen: datetime
    resolved_at: datetime | None
    record: bytes

    def public(self) -> dict[str, Any]:
        """The row as an operator reads it (the record itself is left out: it may be big)."""
        row = {k: v for k, v in self.__dict__.items() if k not in ("record", "event_key")}
        return {k: str(v) if isinstance(v, UUID | datetime) else v for k, v in row.items()}


def table(schema: str) -> str:
    return f"{quoted(schema)}.projection_poisoned_events"


def printable(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` as PostgreSQL can store it (no NUL, no lone surrogate), at most `limit` long:
    the very characters that poisoned an event must not poison its record too."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def describe(error: BaseException) -> tuple[str, str]:
    """The error's class and message, bounded and storable."""
    return printable(type(error).__name__, 200), printable(str(error) or repr(error))


async def lock(connection: Connection, schema: str, name: str, *, shared: bool) -> None:
    """Writers take it shared, a retry exclusively: an event parked by a writer is never
    missed by a retry that resolves what it was parked behind."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    await connection.execute(
        f"SELECT {function}(hashtextextended($1, $2))", f"{schema}:{name}", _LOCK_SALT
    )


async def open_positions(
    connection: Connection, schema: str, name: str, aggregate_ids: Iterable[UUID]
) -> dict[UUID, set[int]]:
    """The unresolved (poisoned or parked) positions of these aggregates' streams."""
    await lock(connection, schema, name, shared=True)
    records = await connection.fetch(
        f"""SELECT aggregate_id, position FROM {table(schema)}
            WHERE projection = $1 AND status <> 'resolved' AND aggregate_id = ANY($2::uuid[])""",
        name,
        list(set(aggregate_ids)),
    )
    found: dict[UUID, set[int]] = {}
    for record in records:
        found.setdefault(UUID(int=record["aggregate_id"].int), set()).add(record["position"])
    return found


_UPSERT = """
INSERT INTO {table} AS p (projection, event_key, position, aggregate_id, aggregate_version,
    event_type, topic, partition, "offset", record, error_class, error_message, status,
    attempts, first_seen, last_seen)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, now(), now())
ON CONFLICT (projection, event_key) DO UPDATE SET
    last_seen = now(),
    error_class = EXCLUDED.error_class,
    error_message = EXCLUDED.error_message,
    status = EXCLUDED.status,
    resolved_at = NULL,
    topic = COALESCE(EXCLUDED.topic, p.topic),
    partition = COALESCE(EXCLUDED.partition, p.partition),
    "offset" = COALESCE(EXCLUDED."offset", p."offset"),
    attempts = p.attempts + CASE WHEN EXCLUDED.status = 'parked' THEN 0 ELSE 1 END
"""


async def record(
    connection: Connection,
    schema: str,
    name: str,
    event: DomainEventMessage,
    source: Origin,
    error: BaseException | None,
) -> None:
    """Record `event` as poisoned by `error`, or (error None) parked behind its stream's
    poisoned event. Again for the same event: one more attempt, never a second row."""
    if error is None:
        error_class, message = "Parked", "an earlier event of its stream is not applied"
    else:
        error_class, message = describe(error)
    (log.error if error else log.warning)(
        "projection.poisoned" if error else "projection.parked",
        projection=name,
        schema=schema,
        position=event.position,
        aggregate_id=str(event.aggregate_id),
        aggregate_version=event.aggregate_version,
        event_type=event.type,
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        error_class=error_class,
        error=message,
    )
    await connection.execute(
        _UPSERT.format(table=table(schema)),
        name,
        f"position:{event.position}",
        event.position,
        event.aggregate_id,
        event.aggregate_version,
        printable(event.type, 200),
        source.topic,
        source.partition,
        source.offset,
        event.encode(),
        error_class,
        message,
        POISONED if error else PARKED,
    )


async def record_unreadable(
    connection: Connection, schema: str, name: str, value: bytes, source: Origin, error: Exception
) -> None:
    """A record that is not an event at all (keyed by its digest: the same bytes again,
    wherever they are delivered, are the same poisoned record)."""
    error_class, message = describe(error)
    log.error(
        "projection.unreadable",
        projection=name,
        schema=schema,
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        error_class=error_class,
        error=message,
    )
    await connection.execute(
        _UPSERT.format(table=table(schema)),
        name,
        f"record:{hashlib.sha256(value).hexdigest()}",
        None,
        None,
        None,
        None,
        source.topic,
        source.partition,
        source.offset,
        value,
        error_class,
        message,
        POISONED,
    )


async def resolve(connection: Connection, schema: str, name: str, event_keys: list[str]) -> None:
    await connection.execute(
        f"""UPDATE {table(schema)} SET status = 'resolved', resolved_at = now(), last_seen = now()
            WHERE projection = $1 AND event_key = ANY($2::text[]) AND status <> 'resolved'""",
        name,
        event_keys,
    )


_COLUMNS = (
    "id, projection, event_key, position, aggregate_id, aggregate_version, event_type, topic, "
    "partition, "
    '"offset", error_class, error_message, status, attempts, first_seen, last_seen, '
    "resolved_at, record"
)


def _row(record: asyncpg.Record) -> PoisonedEvent:
    values = dict(record)
    if values["aggregate_id"] is not None:
        values["aggregate_id"] = UUID(int=values["aggregate_id"].int)
    return PoisonedEvent(**values)


async def list_poisoned(
    connection: Connection | asyncpg.Pool,
    schema: str = DEFAULT_SCHEMA,
    *,
    unresolved_only: bool = False,
    ids: list[int] | None = None,
) -> list[PoisonedEvent]:
    """Rows in log order (records that are not events last); none before the table exists."""
    try:
        records = await connection.fetch(
            f"""SELECT {_COLUMNS} FROM {table(schema)}
                WHERE ($1::bool IS FALSE OR status <> 'resolved')
                  AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))
                ORDER BY position NULLS LAST, id""",
            unresolved_only,
            ids,
        )
    except asyncpg.UndefinedTableError:
        return []
    return [_row(r) for r in records]


async def count_unresolved(pool: asyncpg.Pool, schema: str = DEFAULT_SCHEMA) -> int:
    """How many events the read models are missing (poisoned or parked)."""
    try:
        count = await pool.fetchval(
            f"SELECT count(*) FROM {table(schema)} WHERE status <> 'resolved'"
        )
    except asyncpg.UndefinedTableError:
        return 0
    return int(count)
