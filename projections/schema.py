"""The read-model tables: their columns and the SQL that reads and upserts rows (their
creation, all together, is in `projections.tables`).

Every table lives in one configurable PostgreSQL schema (default `public`), so a rebuild can
fill a scratch schema next to the live one. Every row carries `platform_id` (each query
filters by it) and the stream (`source_id`) and aggregate `version` of the event that last
changed it; upserts only move a row forward (`WHERE version < EXCLUDED.version` and the same
source stream), so a redelivered or replayed event changes nothing.

A schema name is an identifier, so it cannot be a query parameter: it is checked against a
strict pattern and quoted; every value is a parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from uuid import UUID

if TYPE_CHECKING:
    import asyncpg

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
    """A read-model table keyed by `id`: its DDL and the generic statements on its rows.

    jsonb travels as text (`::text::jsonb` in, `::text` out) so the statements work whatever
    type codecs the caller's pool has registered.
    """

    name: str
    columns: tuple[Column, ...]
    #: (index name suffix, what follows `ON table`: the parenthesised keys, maybe a WHERE).
    indexes: tuple[tuple[str, str], ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def qualified(self, schema: str) -> str:
        return f"{quoted(schema)}.{self.name}"

    def create(self, schema: str) -> str:
        body = ",\n    ".join(
            f"{c.name} {c.type}{'' if c.nullable else ' NOT NULL'}"
            + (" PRIMARY KEY" if c.name == "id" else "")
            for c in self.columns
        )
        statements = [f"CREATE TABLE IF NOT EXISTS {self.qualified(schema)} (\n    {body}\n);"]
        statements += [
            f"CREATE INDEX IF NOT EXISTS {self.name}_{suffix} "
            f"ON {self.qualified(schema)} {expression};"
            for suffix, expression in self.indexes
        ]
        return "\n".join(statements)

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
        """Insert, or move an existing row forward: only a later event of the same stream."""
        names = self.column_names
        values = ", ".join(
            f"${i}::text::jsonb" if c.is_json else f"${i}" for i, c in enumerate(self.columns, 1)
        )
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n != "id")
        return (
            f"INSERT INTO {self.qualified(schema)} AS r ({', '.join(names)}) VALUES ({values})\n"
            f"ON CONFLICT (id) DO UPDATE SET {updates}\n"
            "WHERE r.version < EXCLUDED.version AND r.source_id = EXCLUDED.source_id"
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


def find(rows: Rows, table: Table, row_id: UUID) -> Any:
    return rows.get((table.name, row_id))


def row_values(row: Row) -> tuple[Any, ...]:
    """The row as upsert arguments, in column order."""
    table = row.TABLE
    values = []
    for column in table.columns:
        value = getattr(row, column.name)
        values.append(json.dumps(value, sort_keys=True) if column.is_json else value)
    return tuple(values)


def row_from_record(kind: type[Any], record: asyncpg.Record) -> Any:
    """A row dataclass from a record selected with `Table.selected()`."""
    table: Table = kind.TABLE
    values = {}
    for column in table.columns:
        value = record[column.name]
        if column.is_json and isinstance(value, str):
            value = json.loads(value)
        if isinstance(value, UUID) and type(value) is not UUID:
            value = UUID(int=value.int)  # asyncpg's own UUID type: make rows compare plainly
        values[column.name] = value
    return kind(**values)


def moves_forward(current: Row | None, event_stream: UUID, event_version: int) -> bool:
    """Whether an event may change `current`: a new row, or a later event of its own stream."""
    return current is None or (
        current.source_id == event_stream and current.version < event_version
    )
