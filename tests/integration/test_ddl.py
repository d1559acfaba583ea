"""Processes starting together on a fresh database all create the tables without a clash, and
the tables they leave are the ones each store then works with."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from api import replay_guard
from infra.eventstore.notification_log import LogPosition
from infra.eventstore.positions import PostgresPositions
from infra.postgres import platforms
from infra.postgres.secrets_box import SecretBox
from infra.postgres.webhooks_store import WebhookStore
from projections import tables as read_models

pytestmark = pytest.mark.integration

PROCESSES = 8
TABLES = {
    "relay_positions",
    "platforms",
    "platform_api_keys",
    "api_signatures_seen",
    "webhook_subscriptions",
    "webhook_deliveries",
    "strategies",
    "traders",
    "operations",
    "operation_chunks",
    "executions",
    "projection_offsets",
}


async def _start(pool: asyncpg.Pool, box: SecretBox) -> None:
    """What every process's start-up creates (`infra.bootstrap.engine.Engine.start`)."""
    await PostgresPositions(pool).ensure_schema()
    await read_models.ensure_schema(pool)
    await platforms.ensure_schema(pool)
    await replay_guard.ensure_schema(pool)
    await WebhookStore(pool, box).ensure_schema()


async def test_every_schema_created_by_many_processes_at_once(fresh_database_url: str) -> None:
    """CREATE TABLE IF NOT EXISTS racing itself fails with a unique violation on pg_type: the
    API and a worker starting together once left the worker dead at start."""
    box = SecretBox(b"k" * 32)
    pools = [
        await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=1)
        for _ in range(PROCESSES)
    ]
    try:
        await asyncio.gather(*(_start(pool, box) for pool in pools))
        pool = pools[0]
        created = {
            r["tablename"]
            for r in await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert created >= TABLES, sorted(TABLES - created)
        for table in sorted(TABLES):  # each one readable (no half-made catalogue entry)
            assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0

        positions = PostgresPositions(pool)
        await positions.save("outbox", LogPosition(7, 42))
        assert await PostgresPositions(pools[1]).load("outbox") == (7, 42)
        made = await platforms.create_platform(pool, "DDL01", "After the race", box)
        found = await platforms.find_key(pools[2], made.api_key, box)
        assert found is not None and found.platform_id == "DDL01"
        assert await replay_guard.first_use(pool, made.api_key, "sig", "req-1")
        assert not await replay_guard.first_use(pools[3], made.api_key, "sig", "req-2")
        subscription, _ = await WebhookStore(pool, box).create(
            "DDL01", "http://127.0.0.1:9/hooks", ["trade_strategy.trader.created"]
        )
        active = await WebhookStore(pools[4], box).active(["DDL01"])
        assert [s.id for s in active] == [subscription.id]
    finally:
        for pool in pools:
            await pool.close()


async def test_a_column_added_since_a_table_was_released_is_added_at_start(
    fresh_database_url: str,
) -> None:
    """A strategies table made before models existed gets its `model` column, once; the
    statement takes no lock when the column is there (many processes start together)."""
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=PROCESSES)
    try:
        await read_models.ensure_schema(pool)
        await pool.execute("ALTER TABLE public.strategies DROP COLUMN model")
        await asyncio.gather(*(read_models.ensure_schema(pool) for _ in range(PROCESSES)))
        found = await pool.fetchval(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'strategies' AND column_name = 'model'"
        )
        assert found == "jsonb"
    finally:
        await pool.close()
