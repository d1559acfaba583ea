"""Numbered schema migrations: the only code that creates or changes our tables.

Each migration is a file `NNNN_name.sql` next to this module, numbered from 0001 without
gaps. `migrate` applies the ones a database lacks, in order, each in its own transaction
together with its row in `schema_migrations` (so a migration is applied entirely or not at
all, and a failed one is retried from its start by the next run), all under one advisory
lock: a second migrator (two `strategies db migrate`, or embedded processes starting
together) waits, then finds the work done. Running it again is a no-op.

Processes do not migrate a database they do not own: they read the version
(`schema_version`) and refuse to start on one that is behind (`infra.cli.database`).

0001 is the schema as the release before migrations left it, written so that it adopts a
database that release made (every statement a no-op on what is there): such a database has
tables but no `schema_migrations`, and 0001 simply applies to it, keeping every row.
"""

from __future__ import annotations

import contextlib
import re
import zlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK = zlib.crc32(b"portfolio-strategies.migrations")
_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def ordered(found: Iterable[tuple[str, str]]) -> tuple[Migration, ...]:
    """The migrations of (file name, SQL) pairs, by number; refuses a stray file name, a
    number used twice or a gap (a migration merged under a number already released)."""
    migrations = []
    for file_name, sql in found:
        match = _FILE.fullmatch(file_name)
        if match is None:
            raise ValueError(f"migration file {file_name!r} is not NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], sql))
    migrations.sort(key=lambda m: m.version)
    numbers = [m.version for m in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return tuple(migrations)


@cache
def migrations() -> tuple[Migration, ...]:
    """This release's migrations, in order."""
    folder = files(__name__)
    return ordered(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )


def latest() -> int:
    """The version this release needs."""
    return len(migrations())


def pending(applied: Iterable[int], available: Sequence[Migration]) -> list[Migration]:
    """What is left to apply, in order."""
    done = set(applied)
    return [m for m in available if m.version not in done]


async def schema_version(connection: asyncpg.Connection) -> int:
    """The highest migration applied (0: none, or a database older than migrations)."""
    if await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return 0
    found = await connection.fetchval("SELECT max(version) FROM schema_migrations")
    return int(found or 0)


async def migrate(
    connection: asyncpg.Connection, available: Sequence[Migration] | None = None
) -> list[Migration]:
    """Apply what the database lacks, in order, and return it (empty: it was up to date)."""
    available = migrations() if available is None else available
    await connection.execute("SELECT pg_advisory_lock($1)", _LOCK)
    try:
        await connection.execute(_VERSIONS)
        applied = await connection.fetch("SELECT version FROM schema_migrations")
        todo = pending((r["version"] for r in applied), available)
        for migration in todo:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        return todo
    finally:
        # A dead session has released the lock already; its own error is the one to see.
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK)
