"""The read-model tables: their columns and the SQL that reads and upserts rows (the tables
themselves are made by the migrations, `infra/postgres/migrations`; a test checks that the
columns and indexes described here are the ones they make).

Every table lives in one configurable PostgreSQL schema (default `public`), so a rebuild can
fill a scratch schema next to the live one. Every row carries `platform_id` (each query
filters by it) and the stream (`source_id`) and aggregate `version` of the event that last
changed it; upserts only move a row forward (`WHERE version < EXCLUDED.version` and the same
source stream), so a redelivered or replayed event changes nothing.

A schema name is an identifier, so it cannot be a query parameter: it is checked against a
strict pattern and quoted; every value is a parameter.

The projection consumer reads and writes rows by the thousand, so both directions are
compiled once per row type (`RowCodec`): a record becomes a row by position, and a batch of
rows becomes ONE JSON array for a single upsert per table (`json_to_recordset`). That costs
the consumer a third of what `executemany` or `unnest` arrays did: asyncpg checks every
array element in Python, while orjson writes the whole batch, dataclasses included, in C.
Our own jsonb columns hold strings, small integers and nulls, which orjson reads and writes
exactly; a table holding a client's JSON document (`Column.document`) keeps the stdlib,
which keeps every number as given and writes NaN for PostgreSQL to refuse, as it always did.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar
from uuid import UUID

import orjson

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg
    from _typeshed import DataclassInstance

DEFAULT_SCHEMA = "public"
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def quoted(schema: str) -> str:
    """The schema as a quoted SQL identifier; refuses anything but a plain name."""
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} must be letters, digits or '_' (max 63)")
    return f'"{schema}"'


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = False
    #: A client's JSON document (any numbers, any nesting), not one of our own shapes.
    document: bool = False

    @property
    def is_json(self) -> bool:
        return self.type == "jsonb"


#: Every read-model row ends with these: when it was made and last changed, and which stream
#: and version last changed it (the forward-only guard of every upsert).
BOOKKEEPING = (
    Column("created_at", "timestamptz"),
    Column("updated_at", "timestamptz"),
    Column("source_id", "uuid"),
    Column("version", "integer"),
)


def list_indexes(*columns: str) -> tuple[tuple[str, str], ...]:
    """One index per list filter, in the order lists read: a platform's rows, newest first."""
    return (
        ("by_platform", "(platform_id, created_at DESC, id)"),
        *((f"by_{c}", f"(platform_id, {c}, created_at DESC, id)") for c in columns),
    )


@dataclass(frozen=True)
class Table:
    """A read-model table keyed by `id`: its columns and the generic statements on its rows.

    jsonb travels as text (`::text::jsonb` in, `::text` out) so the statements work whatever
    type codecs the caller's pool has registered.
    """

    name: str
    columns: tuple[Column, ...]
    #: (index name suffix, what follows `ON table`: the parenthesised keys, maybe a WHERE):
    #: the indexes its queries count on, made by the migrations as `<name>_<suffix>`.
    indexes: tuple[tuple[str, str], ...] = ()
    #: When an upsert may change a stored row `r` into `EXCLUDED`: by default a later event of
    #: the same stream. A row that many streams write (a price) says its own order.
    guard: str = "r.version < EXCLUDED.version AND r.source_id = EXCLUDED.source_id"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def qualified(self, schema: str) -> str:
        return f"{quoted(schema)}.{self.name}"

    def selected(self, alias: str = "") -> str:
        """The column list of a SELECT, jsonb as text, in the row's field order."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(
            f"{prefix}{c.name}::text AS {c.name}" if c.is_json else f"{prefix}{c.name}"
            for c in self.columns
        )

    def select_by_ids(self, schema: str) -> str:
        return f"SELECT {self.selected()} FROM {self.qualified(schema)} WHERE id = ANY($1::uuid[])"

    def upsert(self, schema: str) -> str:
        """Insert a batch of rows, or move existing ones forward (`guard`: by default only a
        later event of the same stream). The batch is one JSON array of row objects
        (`RowCodec.batch`), so a batch of any size is one statement, which asyncpg prepares
        once per connection. A row appears at most once per batch: ON CONFLICT cannot
        change a row twice."""
        names = ", ".join(self.column_names)
        record = ", ".join(f"{c.name} {c.type}" for c in self.columns)
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in self.column_names if n != "id")
        return (
            f"INSERT INTO {self.qualified(schema)} AS r ({names})\n"
            f"SELECT {names} FROM json_to_recordset($1::text::json) AS u({record})\n"
            f"ON CONFLICT (id) DO UPDATE SET {updates}\n"
            f"WHERE {self.guard}"
        )


class Row(Protocol):
    """A read-model row: a frozen dataclass whose fields are its table's columns."""

    TABLE: ClassVar[Table]

    @property
    def id(self) -> UUID: ...

    @property
    def source_id(self) -> UUID: ...

    @property
    def version(self) -> int: ...


#: (table name, row id): how the writer addresses a row.
Key = tuple[str, UUID]


class Rows(Protocol):
    """The current rows an event may read, as the writer has them (None: no such row)."""

    def get(self, key: Key) -> Any: ...


#: `UUID(text)` for the ids the fold reads from event data, remembered: an event's `needs`
#: and its `changes` read the same id, and an Operation's id recurs in each of its events.
uuid_of = lru_cache(maxsize=4096)(UUID)


def find(rows: Rows, table: Table, row_id: UUID) -> Any:
    return rows.get((table.name, row_id))


AnyRow = TypeVar("AnyRow", bound="DataclassInstance")


def evolve(row: AnyRow, **changes: Any) -> AnyRow:
    """`dataclasses.replace` for a read-model row at a fifth of its cost (the fold makes one
    or two per event). A frozen dataclass's generated __init__ only stores each field through
    object.__setattr__, and rows have no __post_init__, so copying the attributes is the
    same row; a field the row does not have is still refused."""
    kind = type(row)
    fields = kind.__dataclass_fields__
    if not changes.keys() <= fields.keys():
        unknown = ", ".join(sorted(changes.keys() - fields.keys()))
        raise TypeError(f"{kind.__name__} has no field {unknown}")
    new = object.__new__(kind)
    object.__setattr__(new, "__dict__", row.__dict__ | changes)
    return new


_AS_TEXT = (UUID, Decimal)


def _scalar(value: Any) -> str:
    """The JSON string of a column value JSON has no type for (orjson does datetimes itself;
    asyncpg's own UUIDs are a subclass it does not take)."""
    if isinstance(value, _AS_TEXT):
        return str(value)
    if isinstance(value, datetime):  # a naive time is UTC, as everywhere in this project
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    raise TypeError(f"a {type(value).__name__} is not a read-model column value")


class RowCodec:
    """A row type's way to and from PostgreSQL, compiled once: no per-row look-up of
    columns, and JSON decoded only in the columns that hold it."""

    def __init__(self, kind: type[Any]) -> None:
        columns: tuple[Column, ...] = kind.TABLE.columns
        self.kind = kind
        self.names = tuple(c.name for c in columns)
        #: (name, is a client's document) of the jsonb columns.
        self.json_columns = tuple((c.name, c.document) for c in columns if c.is_json)
        self.exact = any(c.document for c in columns)

    def row(self, record: asyncpg.Record) -> Any:
        """The row of a record selected with `Table.selected()` (its columns, in field order,
        maybe followed by others). UUIDs stay asyncpg's own: a `uuid.UUID` subclass that
        hashes and compares as one."""
        values = dict(zip(self.names, record.values(), strict=False))
        for name, document in self.json_columns:
            if isinstance(values[name], str):
                values[name] = json.loads(values[name]) if document else orjson.loads(values[name])
        row = object.__new__(self.kind)  # as `evolve` does: the fields are the columns
        object.__setattr__(row, "__dict__", values)
        return row

    def batch(self, rows: Sequence[Row]) -> str:
        """The argument of `Table.upsert` for `rows`: their JSON array, each row an object
        whose keys are its columns (orjson writes a dataclass so)."""
        if not self.exact:
            try:
                return orjson.dumps(rows, default=_scalar, option=orjson.OPT_NAIVE_UTC).decode()
            except TypeError:  # an integer past 64 bits, a lone surrogate: the stdlib's way
                pass
        objects = [{n: getattr(row, n) for n in self.names} for row in rows]
        return json.dumps(objects, default=_scalar)


_CODECS: dict[type[Any], RowCodec] = {}


def codec(kind: type[Any]) -> RowCodec:
    found = _CODECS.get(kind)
    if found is None:
        found = _CODECS[kind] = RowCodec(kind)
    return found


def row_from_record(kind: type[Any], record: asyncpg.Record) -> Any:
    """A row dataclass from a record selected with `Table.selected()`."""
    return codec(kind).row(record)


def rows_from_records(kind: type[Any], records: Sequence[asyncpg.Record]) -> list[Any]:
    read = codec(kind).row
    return [read(record) for record in records]


def moves_forward(current: Row | None, event_stream: UUID, event_version: int) -> bool:
    """Whether an event may change `current`: a new row, or a later event of its own stream."""
    return current is None or (
        current.source_id == event_stream and current.version < event_version
    )
