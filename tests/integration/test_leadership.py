"""The relay's leadership lock: lost when its session stops answering, and given up promptly
on shutdown even then (a worker on SIGTERM once hung until the database went away)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import zlib
from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra.eventstore.positions import leadership

pytestmark = pytest.mark.integration
EVERY = 0.2


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=3)
    yield pool
    await pool.close()


async def _backend_of_lock(pool: asyncpg.Pool, name: str) -> int:
    async with pool.acquire() as connection:
        pid = await connection.fetchval(  # a one-bigint key below 2**32: all of it in objid
            """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
               AND classid = 0 AND objid = $1::bigint::oid AND objsubid = 1""",
            zlib.crc32(name.encode()),
        )
    assert pid is not None
    return int(pid)


@pytest.mark.timeout(60)  # the bug was a hang: fail in a minute, not the suite's five
async def test_a_frozen_session_is_reported_lost_and_given_up_without_hanging(
    pool: asyncpg.Pool,
) -> None:
    stop, lost = asyncio.Event(), asyncio.Event()
    backend = 0
    try:
        async with leadership(pool, "frozen", stop, retry_every=EVERY, lost=lost) as leading:
            assert leading
            backend = await _backend_of_lock(pool, "frozen")
            os.kill(backend, signal.SIGSTOP)  # the server stops answering this session
            await asyncio.wait_for(lost.wait(), timeout=20 * EVERY)
            leaving = time.monotonic()
        assert time.monotonic() - leaving < 10 * EVERY
    finally:
        if backend:
            os.kill(backend, signal.SIGCONT)
    async with leadership(pool, "frozen", stop, retry_every=EVERY) as again:
        assert again  # the closed session took the lock with it


@pytest.mark.timeout(60)
async def test_leaving_while_the_watchdog_is_mid_check_is_prompt(pool: asyncpg.Pool) -> None:
    stop = asyncio.Event()
    worst = 0.0
    for attempt in range(50):
        async with leadership(pool, "prompt", stop, retry_every=0.002) as leading:
            assert leading
            await asyncio.sleep(0.001 * (attempt % 5))
            leaving = time.monotonic()
        worst = max(worst, time.monotonic() - leaving)
    assert worst < 1.0
