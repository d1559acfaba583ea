"""Creating our tables from several processes at once.

`CREATE TABLE IF NOT EXISTS` is not safe against the same statement running concurrently:
the loser fails with a unique violation on `pg_type` (seen when the API and a worker start
together on a fresh database; the worker exited 1). Every schema is therefore created in a
transaction that first takes one advisory lock, so the statements run one process at a time.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

_DDL_LOCK = zlib.crc32(b"portfolio-strategies.ddl")


async def create_missing(pool: asyncpg.Pool, ddl: str) -> None:
    """Run `ddl` (idempotent statements) while no other process of ours runs any."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
        await connection.execute(ddl)
