"""`strategies projections rebuild` of the live read models: refused while a process projects
into them, done once none does; and a projecting process that starts meanwhile waits."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import asyncpg
import pytest

from infra.bootstrap.engine import Engine
from infra.bus.memory import InProcessBus
from infra.postgres import heartbeats
from infra.postgres.heartbeats import REBUILD, Heartbeat
from infra.settings import Settings
from tests.cli import run_cli

if TYPE_CHECKING:
    import subprocess

pytestmark = pytest.mark.integration


async def rebuild(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["DATABASE_URL"] = url
    return await asyncio.to_thread(run_cli, env, "projections", "rebuild", *args)


async def test_the_live_read_models_are_rebuilt_only_with_no_process_projecting(
    fresh_database_url: str,
) -> None:
    settings = Settings(database_url=fresh_database_url)
    async with Engine(settings, fresh_database_url, ["all"], bus=InProcessBus()):
        refused = await rebuild(fresh_database_url)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "being projected by pid" in refused.stderr and "--schema" in refused.stderr
        scratch = await rebuild(fresh_database_url, "--schema", "scratch")
        assert scratch.returncode == 0, scratch.stderr  # a copy is safe at any time
    done = await rebuild(fresh_database_url)
    assert done.returncode == 0, done.stderr
    assert "rebuilt the read models in schema 'public'" in done.stdout


async def test_a_projecting_process_starting_during_a_rebuild_waits_for_it(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeats, "INTERVAL_S", 0.2)
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=2)
    try:
        rebuilding = Heartbeat(pool, [REBUILD])
        assert await rebuilding.start(unless="projections") == []
        settings = Settings(database_url=fresh_database_url)
        engine = Engine(settings, fresh_database_url, ["all"], bus=InProcessBus())
        starting = asyncio.create_task(engine.start())
        await asyncio.sleep(2.0)  # ten of its retries: it is still waiting
        assert not starting.done()
        await rebuilding.stop()
        await asyncio.wait_for(starting, timeout=60)
        await engine.stop()
    finally:
        await pool.close()
