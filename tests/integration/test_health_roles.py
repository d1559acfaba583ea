"""/health on a Kafka deployment: an API process alone, then with some workers, then all.

It says `degraded` while an Operation waits on a role no live process runs, names the role,
and reports every role alive (with its last progress) once workers run it."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from infra.bootstrap.engine import Engine
from infra.bootstrap.http import create_app
from infra.postgres import heartbeats
from tests.integration.pipeline.harness import (
    engine_settings,
    request_enrollment,
    wait_terminal,
)

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

PLATFORM = "HEALTH01"
CODES = ["H1", "H2", "H3"]
STAGES = ["credit-check", "pricing", "execution"]


async def report(http: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await http.get("/health")
    return response.status_code, response.json()


async def until(http: httpx.AsyncClient, check: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        code, body = await report(http)
        if check(code, body):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)


async def test_health_names_the_missing_role_then_reports_workers_alive(
    fresh_database_url: str, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeats, "INTERVAL_S", 0.5)  # progress shows within a second
    settings = engine_settings(fresh_database_url, kafka_bootstrap, tmp_path, "health")
    app = create_app(settings, fresh_database_url, roles=())  # an API process: no consumers
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            code, fresh = await report(http)
            assert all(r["live_processes"] == 0 for r in fresh["roles"].values())
            engine: Engine = app.state.engine
            operation_id = await request_enrollment(engine, PLATFORM, CODES)
            code, body = await report(http)
            assert (code, body["status"]) == (503, "degraded")
            assert "no live process runs relay" in body["checks"]["pipeline"]["error"]
            assert body["roles"]["relay"]["needed_for"].endswith("not yet published")
            assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]

            async with Engine(settings, fresh_database_url, ["relay", "projections"]):
                waiting = await until(
                    http,
                    lambda _, b: (
                        b["roles"]["credit-check"]["needed_for"] is not None
                        and b["roles"]["relay"]["last_progress"] is not None
                    ),
                )
                assert waiting["status"] == "degraded"
                assert (
                    waiting["roles"]["credit-check"]["needed_for"] == "an Operation is validating"
                )
                assert "no live process runs credit-check" in waiting["checks"]["pipeline"]["error"]
                assert waiting["roles"]["relay"]["live_processes"] == 1
                assert waiting["roles"]["relay"]["last_progress"] is not None

                async with Engine(settings, fresh_database_url, STAGES):
                    await wait_terminal(engine.trading, operation_id)
                    healthy = await until(
                        http,
                        lambda c, b: (
                            c == 200 and all(b["roles"][r]["last_progress"] for r in STAGES)
                        ),
                    )
                    assert healthy["status"] == "ok" and healthy["checks"]["pipeline"]["ok"]
                    for role in ["relay", "projections", *STAGES]:
                        assert healthy["roles"][role]["live_processes"] == 1, role
                        assert healthy["roles"][role]["last_seen"] is not None
            # a clean exit takes the process's rows with it: no role is left looking alive
            code, after = await report(http)
            assert all(r["live_processes"] == 0 for r in after["roles"].values())


async def test_health_calls_a_live_role_stuck_when_work_waits_and_it_makes_no_progress(
    fresh_database_url: str, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process that runs credit-check but handles nothing (a hung consumer, say) keeps its
    heartbeat alive: /health used to say ok while the Operation waited for ever."""
    monkeypatch.setattr(heartbeats, "INTERVAL_S", 0.5)
    settings = engine_settings(
        fresh_database_url, kafka_bootstrap, tmp_path, "stuck", stuck_after_s=2
    )
    app = create_app(settings, fresh_database_url, roles=())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            engine: Engine = app.state.engine
            hung = heartbeats.Heartbeat(engine.pool, ["credit-check"])
            await hung.start()
            try:
                async with Engine(settings, fresh_database_url, ["relay", "projections"]):
                    operation_id = await request_enrollment(engine, PLATFORM, CODES)
                    stuck = await until(http, lambda code, _: code == 503, timeout=30)
                    error = stuck["checks"]["pipeline"]["error"]
                    assert "credit-check is stuck (an Operation is validating" in error, error
                    assert "no live process" not in error  # it is live, and says so
                    role = stuck["roles"]["credit-check"]
                    assert role["stuck"] and role["live_processes"] == 1
                    assert not any(
                        r["stuck"] for n, r in stuck["roles"].items() if n != "credit-check"
                    )

                    # a credit-check that works moves it on: no longer stuck
                    async with Engine(settings, fresh_database_url, STAGES):
                        await wait_terminal(engine.trading, operation_id)
                        healthy = await until(http, lambda code, _: code == 200)
                        assert not healthy["roles"]["credit-check"]["stuck"]
            finally:
                await hung.stop()
