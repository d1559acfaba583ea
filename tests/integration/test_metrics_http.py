"""`strategies serve`'s metrics and probes on a real engine: /metrics behind the admin token,
stage histograms and HTTP counters that move while an Operation runs, the read-side gauges,
and /health/live and /health/ready."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import pytest

from infra.bus.asyncapi import asyncapi_document
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import World, http_world
from tests.integration.pipeline.harness import BLUE_CHIP

pytestmark = pytest.mark.integration

PLATFORM = "METRICS1"
CODES = ["X1", "X2", "X3"]


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "metrics") as url:
        async with http_world(url, tmp_path_factory.mktemp("metrics"), PLATFORM, CODES) as built:
            yield built


async def scrape(world: World) -> str:
    answer = await world.http.get("/metrics", headers=world.admin)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series (labels in any order), 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        series = line.rsplit(" ", 1)[0]  # a route's template holds braces of its own
        found = dict(re.findall(r'(\w+)="([^"]*)"', series))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_need_the_admin_token(world: World) -> None:
    assert (await world.http.get("/metrics")).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert (await world.http.get("/metrics", headers=bad)).status_code == 401


async def test_stage_histograms_and_http_counters_move_while_an_operation_runs(
    world: World,
) -> None:
    before = await scrape(world)
    strategy = await world.strategy()
    people = [{"participant_code": c, "amount": "100.00"} for c in CODES]
    operation = await world.request(
        strategy, "enroll", {"allocations": BLUE_CHIP, "participants": people}
    )
    assert (await world.finished(operation))["status"] == "settled"
    after = await scrape(world)
    for stage, call in (
        ("check", "check_chunk"),
        ("price", "lock_prices"),
        ("settle", "settle_chunk"),
    ):
        name = "strategies_stage_call_duration_seconds_count"
        assert sample(after, name, stage=stage, call=call) > sample(
            before, name, stage=stage, call=call
        ), (stage, call)
    traders = "strategies_stage_traders_total"
    assert sample(after, traders, stage="settle") - sample(before, traders, stage="settle") >= 3
    ended = "strategies_operations_ended_total"
    assert sample(after, ended, status="settled") > sample(before, ended, status="settled")
    route = "/strategies/{strategy_id}/enroll"
    requests = "strategies_http_requests_total"
    assert sample(after, requests, route=route, method="POST", status="202") >= 1
    assert "/strategies/" + strategy not in after  # routes by template, never by id


async def test_the_read_side_gauges_follow_the_read_models(world: World) -> None:
    funded = sample(await scrape(world), "strategies_float_available", platform=PLATFORM)
    delivered = "strategies_webhook_attempts_total"
    sent = sample(await scrape(world), delivered, outcome="delivered")
    strategy = await world.strategy()
    people = [{"participant_code": c, "amount": "50.00"} for c in CODES]
    operation = await world.request(
        strategy, "enroll", {"allocations": BLUE_CHIP, "participants": people}
    )
    await world.finished(operation)
    deadline = time.monotonic() + 30
    while True:
        text = await scrape(world)
        settled = sample(text, "strategies_operations", type="enrollment", status="settled")
        if settled >= 1 and sample(text, "strategies_projection_lag_events") == 0:
            break
        assert time.monotonic() < deadline, text[-3000:]
        await asyncio.sleep(0.5)
    assert "strategies_relay_lag_events" in text
    assert "strategies_webhook_deliveries" in text
    # nothing running: no chunk waits at either stage
    assert sample(text, "strategies_chunks_in_flight", stage="check") == 0
    assert sample(text, "strategies_chunks_in_flight", stage="settle") == 0
    # the float the test funded, less what the enrollments spent (a figure may be one
    # refresh behind: the spend shows by the next one)
    while sample(text, "strategies_float_available", platform=PLATFORM, currency="USD") in (
        0,
        funded,
    ):
        assert time.monotonic() < deadline, text[-3000:]
        await asyncio.sleep(0.5)
        text = await scrape(world)
    left = sample(text, "strategies_float_available", platform=PLATFORM, currency="USD")
    assert 0 < left <= 1_000_000 - 150
    # the webhook receiver the world subscribed got the Operation's notifications
    assert sample(text, delivered, outcome="delivered") > sent
    # every pool of the process: the API's, the engine's and the event store's
    for pool in ("api", "engine", "event_store"):
        in_use = sample(text, "strategies_db_pool_connections", pool=pool, state="in_use")
        idle = sample(text, "strategies_db_pool_connections", pool=pool, state="idle")
        assert in_use + idle >= 1, pool


async def test_liveness_and_readiness(world: World) -> None:
    live = await world.http.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "ok", "reason": ""}
    ready = await world.http.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


async def test_the_asyncapi_document_is_served_without_a_signature(world: World) -> None:
    answer = await world.http.get("/asyncapi.json")
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert served["asyncapi"] == "3.0.0"
    prefix = world.app.state.settings.topic_prefix
    assert served == asyncapi_document(prefix, world.app.version)
