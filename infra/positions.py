"""Durable positions (the outbox relay's place in the log) and single-leader locks."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog

from infra.ddl import create_missing

log = structlog.get_logger("infra.positions")

SCHEMA = """
CREATE TABLE IF NOT EXISTS relay_positions (
    name text PRIMARY KEY,
    position bigint NOT NULL
);
"""


class PostgresPositions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure_schema(self) -> None:
        await create_missing(self.pool, SCHEMA)

    async def load(self, name: str) -> int:
        async with self.pool.acquire() as connection:
            position = await connection.fetchval(
                "SELECT position FROM relay_positions WHERE name = $1", name
            )
        return int(position or 0)

    async def save(self, name: str, position: int) -> None:
        async with self.pool.acquire() as connection:
            # GREATEST: a position never moves backwards, whoever writes last.
            await connection.execute(
                """INSERT INTO relay_positions (name, position) VALUES ($1, $2)
                   ON CONFLICT (name) DO UPDATE
                   SET position = GREATEST(relay_positions.position, EXCLUDED.position)""",
                name,
                position,
            )


@asynccontextmanager
async def leadership(
    pool: asyncpg.Pool,
    name: str,
    stop: asyncio.Event,
    retry_every: float = 1.0,
    lost: asyncio.Event | None = None,
) -> AsyncIterator[bool]:
    """Hold a PostgreSQL advisory lock named `name` for the duration; several relay
    processes may run, but only the holder relays (the others wait as hot standbys).
    Yields False if `stop` was set before the lock could be had.

    The lock lives as long as its session: if the connection dies (database restart,
    pg_terminate_backend) a standby may take over, so the holder checks its session every
    `retry_every` seconds and sets `lost` when it is gone, to stop leading at once."""
    key = zlib.crc32(name.encode())
    connection = await pool.acquire()
    try:
        while not await connection.fetchval("SELECT pg_try_advisory_lock($1)", key):
            log.info("leadership.waiting", name=name)
            try:
                await asyncio.wait_for(stop.wait(), timeout=retry_every)
            except TimeoutError:
                continue
            yield False
            return
        log.info("leadership.acquired", name=name)
        watchdog = asyncio.create_task(_watch(connection, name, retry_every, lost))
        try:
            yield True
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            # A dead session already released the lock with it: nothing left to unlock.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await connection.execute("SELECT pg_advisory_unlock($1)", key)
    finally:
        await pool.release(connection)


async def _watch(connection: Any, name: str, every: float, lost: asyncio.Event | None) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.wait_for(connection.fetchval("SELECT 1"), timeout=every * 5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            log.warning("leadership.lost", name=name)
            if lost is not None:
                lost.set()
            return
