"""The database's schema at start-up: migrated by whoever owns the database, checked by the rest.

`migrate_database` applies the migrations (`infra.postgres.migrations`) and, when it has just
created the roster over an event store older than it, fills the roster from the history (a
fold of every Trader, which SQL cannot do). `require_current` is what every process that
does not own its database runs first: a schema behind this release stops it with one line.
"""

from __future__ import annotations

import asyncio

import asyncpg

from infra.eventstore.store import PostgresTrading
from infra.logging import get_logger
from infra.postgres.migrations import Migration, latest, migrate, schema_version

log = get_logger(__name__)

_STORE_WITHOUT_ROSTER = (
    "SELECT to_regclass('trading_events') IS NOT NULL AND to_regclass('trading_roster') IS NULL"
)


class SchemaBehindError(Exception):
    """The database has not been migrated to what this release needs."""

    def __init__(self, current: int, needed: int) -> None:
        super().__init__(
            f"database schema is at {current}, this release needs {needed}: "
            "run strategies db migrate"
        )
        self.current = current
        self.needed = needed


async def migrate_database(url: str) -> list[Migration]:
    """Bring the database at `url` to this release's schema; what was applied, in order."""
    connection = await asyncpg.connect(url)
    try:
        roster_missing = bool(await connection.fetchval(_STORE_WITHOUT_ROSTER))
        applied = await migrate(connection)
    finally:
        await connection.close()
    if roster_missing:
        traders = await asyncio.to_thread(_fill_roster, url)
        log.info("schema.roster_filled", traders=traders)
    return applied


def _fill_roster(url: str) -> int:
    with PostgresTrading(url, pool_size=2, max_overflow=2) as trading:
        return trading.fill_roster()


async def require_current(url: str) -> int:
    """The database's version; `SchemaBehindError` when this release needs a later one. A
    later one is fine: the release after this one migrates before its processes replace
    these, and its migrations keep what these read."""
    connection = await asyncpg.connect(url)
    try:
        current = await schema_version(connection)
    finally:
        await connection.close()
    if current < latest():
        raise SchemaBehindError(current, latest())
    return current
