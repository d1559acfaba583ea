"""Durable positions (the outbox relay's place in the log) and single-leader locks."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
import structlog

from infra.eventstore.notification_log import START, LogPosition

log = structlog.get_logger("infra.eventstore.positions")
T = TypeVar("T")

# A position is a place in the log, (tx_id, position) (`LogPosition`), in `relay_positions`
# (migration 0001). A transaction id (xid8) fits a bigint: it would take 2**63 transactions
# to overflow it.


class PostgresPositions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, name: str) -> LogPosition:
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT tx_id, position FROM relay_positions WHERE name = $1", name
            )
        return START if row is None else LogPosition(row["tx_id"], row["position"])

    async def save(self, name: str, position: LogPosition) -> None:
        async with self.pool.acquire() as connection:
            # Only forward: a position never moves backwards, whoever writes last.
            await connection.execute(
                """INSERT INTO relay_positions AS r (name, tx_id, position) VALUES ($1, $2, $3)
                   ON CONFLICT (name) DO UPDATE
                   SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position
                   WHERE (r.tx_id, r.position) < (EXCLUDED.tx_id, EXCLUDED.position)""",
                name,
                position.transaction,
                position.notification_id,
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
        done = asyncio.Event()
        watchdog = asyncio.create_task(_watch(connection, name, retry_every, lost, done))
        try:
            yield True
        finally:
            # Not watchdog.cancel(): an asyncpg query cancelled in flight could leave the
            # session waiting for the server's answer to the cancellation, and a worker on
            # SIGTERM then hung until the database went away. The watchdog finishes its
            # current check (bounded by its own timeout) and returns.
            done.set()
            await watchdog
            # A dead session already released the lock with it; a stuck one is closed.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await _within(
                    connection,
                    connection.execute("SELECT pg_advisory_unlock($1)", key),
                    retry_every * 5,
                )
    finally:
        await pool.release(connection)


async def _watch(
    connection: Any, name: str, every: float, lost: asyncio.Event | None, done: asyncio.Event
) -> None:
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=every)
        if done.is_set():
            return
        try:
            await _within(connection, connection.fetchval("SELECT 1"), every * 5)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            log.warning("leadership.lost", name=name)
            if lost is not None:
                lost.set()
            return


async def _within(connection: Any, query: Awaitable[T], seconds: float) -> T:
    """`query`'s result, or TimeoutError after `seconds` with the session closed.

    Not asyncio.wait_for: on timeout it cancels the query and waits for the cancellation,
    which asyncpg completes only once the server answers; closing the session cannot hang
    (and ends the advisory lock with it)."""
    task = asyncio.ensure_future(query)
    finished, _ = await asyncio.wait({task}, timeout=seconds)
    if not finished:
        connection.terminate()
        task.add_done_callback(_consume)
        raise TimeoutError(f"no answer from the database within {seconds} s")
    return task.result()


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the closed session's error is expected
