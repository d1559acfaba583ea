"""A poisoned event on the live pipeline, in embedded mode (read models following the event
store's log) and on real Kafka: the events behind it (on its partition, with Kafka), another
platform's Strategy among them, still reach the read models; the poisoned events are listed
(CLI, `/health`); a retry leaves an event poisoned while its cause is there and applies it
once the cause is removed; a consumer restart counts nothing twice.

Two poisons, both made at the event level (input checks now refuse the values that first
poisoned the read models): a Strategy whose metadata holds a NUL, saved through the
application itself but past `create_strategy`'s check, as a history written before that
check holds it (jsonb cannot store `\\u0000`, whatever is retried: it stays poisoned); and an
ordinary Strategy that a CHECK constraint the test adds to the read-model table refuses, as
a stricter migration would. Dropping the constraint is the fix, after which its retry
applies it. Without the poisoned-event handling the first poison is retried forever and the
other platform's Strategy behind it never appears (the test times out waiting for it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from domain import ids
from infra.bootstrap.engine import Engine
from infra.bootstrap.http import create_app
from infra.bus.memory import partition_for
from infra.settings import Settings
from projections import poisoned, queries
from tests.cli import run_cli
from tests.integration.pipeline.harness import PLATFORM
from tests.integration.test_poisoned_events import save_strategy_with_nul

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import asyncpg

pytestmark = pytest.mark.integration

OTHER = "platform-other"
REFUSED = {"quoted_currency": "USD", "metadata": {"refused_by_read_model": True}}
WAIT_S = 60.0


@pytest.fixture(params=["embedded", "kafka"])
def settings(request: pytest.FixtureRequest, fresh_database_url: str, tmp_path: Path) -> Settings:
    bootstrap = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    return Settings(
        data_dir=tmp_path,
        database_url=fresh_database_url,
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"poison-{uuid4().hex[:8]}",
        master_key=base64.b64encode(bytes(range(32))).decode(),
    )


def partition_of(engine: Engine) -> Callable[[UUID], int]:
    """Where the bus puts an aggregate's events (the key is its id)."""
    count = engine.bus.partitions  # type: ignore[attr-defined]
    if engine.settings.kafka.bootstrap_servers:
        kafka = DefaultPartitioner()
        everyone = list(range(count))
        return lambda key: int(kafka(str(key).encode(), everyone, everyone))
    return lambda key: partition_for(str(key), count)


async def until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (found := await check()):
        assert time.monotonic() < deadline, f"timed out after {WAIT_S}s waiting for {what}"
        await asyncio.sleep(0.1)
    return found


def database(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.get_secret_value()


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {**os.environ, "DATABASE_URL": database(settings)}
    env["STRATEGIES_DATA_DIR"] = str(settings.data_dir)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    done = run_cli(env, "projections", "poisoned", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, done.stdout


async def listed(settings: Settings, *args: str) -> tuple[int, dict[int, dict[str, Any]]]:
    code, out = await asyncio.to_thread(cli, settings, "--json", *args)
    return code, {row["id"]: row for row in json.loads(out)}


async def test_a_poisoned_event_costs_its_own_rows_never_its_partition(settings: Settings) -> None:
    url = database(settings)
    app = create_app(settings, url, roles=("all",))
    async with app.router.lifespan_context(app):
        engine: Engine = app.state.engine
        pool: asyncpg.Pool = engine.pool
        trading = engine.trading
        await pool.execute(
            "ALTER TABLE strategies ADD CONSTRAINT it_refused "
            "CHECK (NOT metadata ? 'refused_by_read_model')"
        )
        nul = await asyncio.to_thread(save_strategy_with_nul, trading)
        refused, _ = await engine.call(trading.create_strategy, PLATFORM, uuid4(), REFUSED)
        where = partition_of(engine)
        request_id = next(
            r
            for r in iter(uuid4, None)
            if where(ids.strategy_id(OTHER, r)) == where(nul.id) and r != nul.request_id
        )
        other, _ = await engine.call(
            trading.create_strategy, OTHER, request_id, {"quoted_currency": "USD"}
        )

        async def others_strategy() -> bool:
            return bool(await queries.get_strategy(pool, OTHER, other.id))

        await until(others_strategy, "the other platform's Strategy behind the poisoned event")

        async def both_poisoned() -> list[poisoned.PoisonedEvent]:
            rows = await poisoned.list_poisoned(pool)
            return rows if len(rows) == 2 else []

        rows = {row.aggregate_id: row for row in await until(both_poisoned, "two poisoned")}
        assert rows[nul.id].error_class == "UntranslatableCharacterError"
        assert rows[refused.id].error_class == "CheckViolationError"
        if settings.kafka.bootstrap_servers:
            assert rows[nul.id].partition == where(nul.id)
        else:  # embedded read models follow the event store's log, not a partition
            assert (rows[nul.id].topic, rows[nul.id].partition) == ("log", None)
        assert {row.status for row in rows.values()} == {"poisoned"}

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            health = (await http.get("/health")).json()
        assert health["roles"]["projections"]["poisoned_events"] == 2
        assert health["roles"]["relay"]["poisoned_events"] is None

        code, shown = await listed(settings)
        assert code == 0 and {r["aggregate_id"] for r in shown.values()} == {
            str(nul.id),
            str(refused.id),
        }
        header, *lines = (await asyncio.to_thread(cli, settings))[1].splitlines()
        assert header.split()[:3] == ["ID", "STATUS", "ATTEMPTS"] and len(lines) == 2
        assert any(str(nul.id) in line and "UntranslatableCharacter" in line for line in lines)

        # Retried while the cause is there: still poisoned (exit 1), one more attempt.
        code, retried = await listed(settings, "--retry-all")
        assert code == 1
        assert {(r["status"], r["attempts"]) for r in retried.values()} == {("poisoned", 2)}
        assert await queries.get_strategy(pool, PLATFORM, refused.id) is None

        await pool.execute("ALTER TABLE strategies DROP CONSTRAINT it_refused")  # the fix
        code, retried = await listed(settings, "--retry", str(rows[refused.id].id))
        assert (code, retried[rows[refused.id].id]["status"]) == (0, "resolved")
        strategy = await queries.get_strategy(pool, PLATFORM, refused.id)
        assert strategy is not None and strategy["metadata"] == REFUSED["metadata"]
        code, again = await listed(settings, "--retry", str(rows[refused.id].id))
        assert (code, again) == (0, retried)  # resolved already: nothing to do
        code, still = await listed(settings, "--retry", str(rows[nul.id].id))
        assert code == 1 and still[rows[nul.id].id]["attempts"] == 3
        before_restart = await poisoned.list_poisoned(pool)

    # A consumer restart meets what it recorded: nothing counted twice.
    async with Engine(settings, url, ["all"]) as restarted:
        late, _ = await restarted.call(
            restarted.trading.create_strategy, OTHER, uuid4(), {"quoted_currency": "USD"}
        )

        async def caught_up() -> bool:
            return bool(await queries.get_strategy(restarted.pool, OTHER, late.id))

        await until(caught_up, "the restarted consumer to catch up")
        assert await poisoned.list_poisoned(restarted.pool) == before_restart
        assert await poisoned.count_unresolved(restarted.pool) == 1
