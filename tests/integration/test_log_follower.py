"""Embedded mode's read models follow the event store's log, in a child process or a task.

They must come out as a rebuild makes them (every event applied once, in log order), survive
the child being killed mid-stream, and keep their position with their rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from uuid import uuid4

import asyncpg
import pytest

from domain.statuses import OperationStatus, OperationType
from infra.bootstrap.engine import Engine
from infra.bootstrap.projector import ProjectorProcess
from infra.bus.memory import InProcessBus
from infra.bus.outbox import TASK_EVENTS, event_message, may_make_tasks
from infra.bus.topic_names import Topics
from infra.eventstore.notification_log import (
    START,
    ApplicationNotificationLog,
    LogPosition,
    StoredNotification,
)
from infra.settings import Settings
from projections.follower import LogFollower
from projections.rebuild import rebuild
from projections.tables import empty_read_models
from projections.writer import ProjectionWriter
from tests.integration.pipeline.harness import BLUE_CHIP, PLATFORM, wait_terminal
from tests.integration.test_projections import snapshot

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CODES = [f"F{i:03d}" for i in range(7)]
NEW_WEIGHTS = [
    {"underlying_currency": "BTC", "weight": "0.2"},
    {"underlying_currency": "ETH", "weight": "0.5"},
    {"underlying_currency": "SOL", "weight": "0.3"},
]


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=4)
    yield created
    await created.close()


async def enroll_and_rebalance(engine: Engine, *, between: object = None) -> None:
    trading = engine.trading
    await engine.call(trading.register_participants, PLATFORM, CODES)
    await engine.call(trading.deposit_float, PLATFORM, "USD", Decimal("50000.00"), "IT")
    strategy, _ = await engine.call(
        trading.create_strategy, PLATFORM, uuid4(), {"quoted_currency": "USD"}
    )
    body = {
        "allocations": BLUE_CHIP,
        "participants": [{"participant_code": c, "amount": "150.00"} for c in CODES],
    }
    enrolled, _ = await engine.call(
        trading.request_operation, PLATFORM, strategy.id, uuid4(), OperationType.ENROLLMENT, body
    )
    if callable(between):
        between()
    assert (await wait_terminal(trading, enrolled.id)).status is OperationStatus.SETTLED
    rebalanced, _ = await engine.call(
        trading.request_operation,
        PLATFORM,
        strategy.id,
        uuid4(),
        OperationType.REBALANCE,
        {"allocations": NEW_WEIGHTS, "participants": CODES},
    )
    assert (await wait_terminal(trading, rebalanced.id)).status is OperationStatus.SETTLED


@contextlib.asynccontextmanager
async def story_told(database_url: str) -> AsyncIterator[Engine]:
    """An engine with its read models inline, once it has enrolled, rebalanced and drained."""
    settings = Settings(database_url=database_url, chunk_size=3)
    async with Engine(settings, database_url, ["all"], projections="inline") as engine:
        await enroll_and_rebalance(engine)
        assert await engine.drain()
        yield engine


@pytest.mark.parametrize("mode", ["process", "inline"])
async def test_the_read_models_follow_the_log_and_equal_a_rebuild(
    fresh_database_url: str, pool: asyncpg.Pool, mode: Literal["process", "inline"]
) -> None:
    settings = Settings(database_url=fresh_database_url, chunk_size=3)
    bus = InProcessBus()
    async with Engine(settings, fresh_database_url, ["all"], bus=bus, projections=mode) as engine:
        assert (engine.projector is not None) == (mode == "process")
        await enroll_and_rebalance(engine)
        assert await engine.drain()
        # Nobody reads the events topic here: the relay publishes only the stage tasks.
        assert not engine.relay.publish_events
        assert bus.retained(Topics(settings.topic_prefix).events) == 0
        live = await snapshot(pool, "public")
        await rebuild(pool, engine.trading, "scratch")
        assert live == await snapshot(pool, "scratch")
        assert len(live["executions"]) == 2 * len(CODES)
        applied = await ProjectionWriter(pool).log_position()
        notifications = ApplicationNotificationLog(engine.trading)
        assert await asyncio.to_thread(notifications.unpublished, applied, 1) == 0


async def test_a_killed_follower_process_is_restarted_and_misses_nothing(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    settings = Settings(database_url=fresh_database_url, chunk_size=2)
    async with Engine(settings, fresh_database_url, ["all"], projections="process") as engine:
        assert engine.projector is not None and engine.projector.pid is not None
        first = engine.projector.pid
        await enroll_and_rebalance(engine, between=lambda: os.kill(first, signal.SIGKILL))
        assert await engine.drain()
        assert engine.projector.restarts == 1 and engine.projector.pid != first
        live = await snapshot(pool, "public")
        await rebuild(pool, engine.trading, "scratch")
        assert live == await snapshot(pool, "scratch")
    assert engine.projector.process is not None
    assert engine.projector.process.returncode == 0  # stopped by SIGTERM, cleanly


async def test_a_batch_applied_twice_changes_nothing_the_second_time(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    async with story_told(fresh_database_url) as engine:
        notifications = ApplicationNotificationLog(engine.trading)
        batch = await asyncio.to_thread(notifications.read, START, 10_000)
        # The relay without event readers reads only what can make a stage task, and the
        # window's last event (its position), window by window.
        lean: list[StoredNotification] = []
        position = START
        while window := await asyncio.to_thread(notifications.read, position, 7, kinds=TASK_EVENTS):
            lean.extend(window)
            position = window[-1].at
    assert position == batch[-1].at
    wanted = [n for n in batch if may_make_tasks(n.topic)]
    assert [n for n in lean if may_make_tasks(n.topic)] == wanted
    assert len(wanted) < len(lean) < len(batch)  # a few windows' last ones, not the Traders'
    assert all(n.state == {} for n in lean if not may_make_tasks(n.topic))
    items = [
        (
            event_message(
                n.position, n.topic, n.aggregate_id, n.version, n.state, already_plain=n.plain
            ),
            n.at,
        )
        for n in batch
    ]
    writer = ProjectionWriter(pool)
    before = await snapshot(pool, "public")
    position = await writer.log_position()
    assert position == batch[-1].at
    assert await writer.apply_logged(items[: len(items) // 2]) == position  # a late follower
    assert await writer.apply_logged(items) == position
    assert await snapshot(pool, "public") == before


async def test_the_next_batch_is_read_while_one_is_written_and_a_failed_write_loses_nothing(
    fresh_database_url: str, pool: asyncpg.Pool
) -> None:
    async with story_told(fresh_database_url) as engine:
        live = await snapshot(pool, "public")
        notifications = ApplicationNotificationLog(engine.trading)
        await empty_read_models(pool, "scratch")
        writer = ProjectionWriter(pool, "scratch")
        steps: list[str] = []
        read, apply = notifications.read, writer.apply_logged

        def reading(after: LogPosition, limit: int, **kwargs: object) -> object:
            steps.append("read")
            return read(after, limit)

        async def writing(items: list[Any]) -> LogPosition:
            steps.append("write")
            if steps.count("write") == 3:
                raise ConnectionError("the read models are unreachable")
            try:
                return await apply(items)
            finally:
                steps.append("written")

        notifications.read = reading  # type: ignore[method-assign]
        writer.apply_logged = writing  # type: ignore[method-assign]
        follower = LogFollower(writer, notifications, batch_size=5)
        await follower.resume()
        failed = False
        while True:
            try:
                if not await follower.run_once():
                    break
            except ConnectionError:
                failed = True
    assert failed
    assert await snapshot(pool, "scratch") == live
    # Every write but the failed one overlapped the next read; the failed batch was read again.
    assert steps[:4] == ["read", "write", "read", "written"]
    assert steps.count("read") > steps.count("written") + 1


def test_the_follower_process_stops_when_its_parent_is_gone(fresh_database_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": fresh_database_url, "STRATEGIES_LOG_LEVEL": "WARNING"}
    # pid 1 is not our parent: the follower sees its parent gone at its first look.
    follower = subprocess.run(
        [sys.executable, "-m", "infra.cli", "projections", "follow", "--parent", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert follower.returncode == 0, follower.stderr
    assert "projections.parent_gone" in follower.stderr


async def test_an_engine_refuses_to_start_when_its_follower_process_cannot(
    fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    projector = ProjectorProcess(Settings(database_url=fresh_database_url), fresh_database_url)
    # The child reads its settings from the environment: a bad one stops it at start-up.
    monkeypatch.setenv("STRATEGIES_HTTP_PORT", "0")
    with pytest.raises(RuntimeError, match="did not start"):
        await projector.start()
    assert projector.process is not None and projector.process.returncode == 2
