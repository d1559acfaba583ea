"""Processes starting together on a fresh database all create the tables without a clash."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from api import replay_guard
from infra import platforms
from infra.positions import PostgresPositions
from infra.webhooks_store import WebhookStore

pytestmark = pytest.mark.integration


async def test_every_schema_created_by_many_processes_at_once(fresh_database_url: str) -> None:
    """CREATE TABLE IF NOT EXISTS racing itself fails with a unique violation on pg_type: the
    API and a worker starting together once left the worker dead at start."""
    pools = [
        await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=1) for _ in range(8)
    ]
    try:

        async def start(pool: asyncpg.Pool) -> None:
            await PostgresPositions(pool).ensure_schema()
            await platforms.ensure_schema(pool)
            await replay_guard.ensure_schema(pool)
            await WebhookStore(pool, None).ensure_schema()

        await asyncio.gather(*(start(pool) for pool in pools))
    finally:
        for pool in pools:
            await pool.close()
