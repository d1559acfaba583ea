"""Rebalancing policies over HTTP: PUT, shown by GET, refused when bad; the scheduler's runs
(a scheduler with its own clock over the real engine: exactly one run per period, however
often or by however many schedulers it ticks) and a model break told by webhook."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from domain import ids
from domain.catalogue import Instrument, InstrumentStatus
from infra.bus.messages import Command
from infra.eventstore.store import PostgresTrading
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import Item, World, http_world
from tests.integration.pipeline.harness import BLUE_CHIP
from workers.commands import CommandService
from workers.scheduler import PolicyScheduler

pytestmark = pytest.mark.integration

PLATFORM = "POLICY1"
IN_LINE = ["L1", "L2"]
DRIFTED = ["D1", "D2", "D3"]
SKEWED = [
    {"underlying_currency": "BTC", "weight": "0.80"},
    {"underlying_currency": "ETH", "weight": "0.10"},
    {"underlying_currency": "SOL", "weight": "0.10"},
]
WEEKLY = {
    "calendar": {"frequency": "weekly", "weekday": "monday", "time": "09:30"},
    "drift_band": {"absolute": "0.05"},
}


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "policy") as url:
        codes = IN_LINE + DRIFTED
        async with http_world(url, tmp_path_factory.mktemp("policy"), PLATFORM, codes) as built:
            yield built


async def enrolled(world: World) -> Item:
    """A Strategy with a model, two Traders on it and three bought elsewhere (drifted)."""
    created = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    assert created.status_code == 201, created.text
    strategy: Item = created.json()
    for codes, extra in ((IN_LINE, {}), (DRIFTED, {"allocations": SKEWED})):
        people = [
            {"participant_code": c, "amount": "100.00", "auto_rebalance": True} for c in codes
        ]
        operation = await world.request(strategy["id"], "enroll", {"participants": people, **extra})
        assert (await world.finished(operation))["status"] == "settled"
    return strategy


async def put_policy(
    world: World, strategy_id: str, body: Item, request_id: str | None = None
) -> httpx.Response:
    return await world.client.request(
        "PUT", f"/strategies/{strategy_id}/policy", body, request_id=request_id
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scheduler(world: World, clock: Clock) -> PolicyScheduler:
    engine = world.engine
    return PolicyScheduler(
        engine.trading,
        engine.venue,
        engine.commands,
        engine.call,
        lambda: _with_models(world),
        clock=clock,
    )


async def _with_models(world: World) -> list[uuid.UUID]:
    from projections.queries import strategies_with_models

    await world.caught_up()
    return await strategies_with_models(world.engine.pool)


def next_monday(after: datetime) -> datetime:
    day = after.date() + timedelta(days=7 - after.weekday())
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=10)


async def test_a_policy_is_set_shown_and_versioned_over_http(world: World) -> None:
    strategy = await enrolled(world)
    request_id = str(uuid.uuid4())
    answer = await put_policy(world, strategy["id"], WEEKLY, request_id)
    assert answer.status_code == 200, answer.text
    policy = answer.json()["policy"]
    assert policy["version"] == 1 and policy["calendar"] == {
        "frequency": "weekly",
        "time": "09:30",
        "weekday": "monday",
    }
    assert policy["drift_band"] == {"absolute": "0.05"} and policy["cash_buffer"] == "0"
    assert policy["effective_from"] and policy["last_run"] is None
    assert answer.json()["status"] == "active"
    again = await put_policy(world, strategy["id"], WEEKLY, request_id)
    assert again.status_code == 200 and again.json()["policy"]["version"] == 1
    other = await put_policy(world, strategy["id"], {"cooldown_days": 3}, request_id)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    shown = await world.until(
        f"/strategies/{strategy['id']}", lambda got: (got.get("policy") or {}).get("version") == 1
    )
    assert shown["policy"] == policy


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"cash_buffer": "0.5"}, 400, "invalid_policy"),
        ({"cash_buffer": 0.01}, 400, "invalid_request"),
        ({"cooldown_days": True}, 400, "invalid_request"),
        ({"calendar": {"frequency": "weekly"}}, 400, "invalid_policy"),
        ({"calendar": {"frequency": "hourly"}}, 400, "invalid_request"),
        ({"calendar": {"frequency": "daily", "time": "25:00"}}, 400, "invalid_policy"),
        ({"drift_band": {}}, 400, "invalid_policy"),
        ({"drift_band": {"absolute": "2"}}, 400, "invalid_policy"),
        ({"surprise": 1}, 400, "invalid_request"),
    ],
)
async def test_a_bad_policy_is_refused_and_changes_nothing(
    world: World, body: Item, status: int, code: str
) -> None:
    created = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    strategy_id = created.json()["id"]
    answer = await put_policy(world, strategy_id, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code, answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert (await world.client.get(f"/strategies/{strategy_id}")).json()["policy"] is None


async def test_a_policy_request_replays_across_http_and_the_command_topic(world: World) -> None:
    created = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    strategy_id = created.json()["id"]
    service = CommandService(world.engine.trading, world.engine.call)
    request_id = uuid.uuid4()
    over_kafka = await service.execute(
        PLATFORM,
        request_id,
        Command(command="set_policy", strategy_id=uuid.UUID(strategy_id), body=WEEKLY),
    )
    assert over_kafka.outcome == "accepted", over_kafka
    assert over_kafka.resource is not None and over_kafka.resource["policy"]["version"] == 1
    over_http = await put_policy(world, strategy_id, WEEKLY, str(request_id))
    assert over_http.status_code == 200 and over_http.json()["policy"]["version"] == 1
    bad = await service.execute(
        PLATFORM,
        uuid.uuid4(),
        Command(command="set_policy", strategy_id=uuid.UUID(strategy_id), body={"cash_buffer": 1}),
    )
    assert bad.outcome == "rejected" and bad.error is not None
    assert bad.error.code == "invalid_policy"


async def test_a_calendar_needs_a_model(world: World) -> None:
    bare = await world.strategy()
    answer = await put_policy(world, bare, WEEKLY)
    assert answer.status_code == 409 and answer.json()["code"] == "model_required", answer.text


async def test_the_scheduler_rebalances_only_the_drifted_once_per_period(world: World) -> None:
    strategy = await enrolled(world)
    assert (await put_policy(world, strategy["id"], WEEKLY)).status_code == 200
    monday = next_monday(datetime.now(UTC))
    clock = Clock(monday - timedelta(hours=1))  # 09:00: not yet
    first = scheduler(world, clock)
    assert not [o for o in await first.tick() if o.outcome != "skipped"]

    clock.now = monday  # 10:00, the period is due
    (ran,) = [o for o in await first.tick() if o.strategy_id == uuid.UUID(strategy["id"])]
    assert (
        ran.outcome == "ran"
        and ran.period == f"{monday.isocalendar()[0]}-W{monday.isocalendar()[1]:02d}"
    )
    operation = await world.finished({"id": ran.operation_id})
    assert operation["status"] == "settled", operation
    assert operation["type"] == "rebalance" and operation["participant_count"] == len(DRIFTED)
    assert operation["origin"] == "policy" and operation["model_version"] == 1
    assert operation["policy_run"] == {"policy_version": 1, "period": ran.period}
    assert operation["request_id"] == str(
        ids.policy_run_request_id(uuid.UUID(strategy["id"]), ran.period)
    )
    executions = (
        await world.client.get(f"/strategies/executions?operation_id={ran.operation_id}")
    ).json()["message"]
    assert sorted(e["participant_code"] for e in executions) == DRIFTED

    # The same scheduler later in the period, and a restarted one: nothing more.
    clock.now = monday + timedelta(hours=5)
    restarted = scheduler(world, clock)
    for again in (first, restarted):
        outcomes = [o for o in await again.tick() if o.strategy_id == uuid.UUID(strategy["id"])]
        assert [o.outcome for o in outcomes] == ["skipped"]
    shown = await world.until(
        f"/strategies/{strategy['id']}",
        lambda got: (got["policy"] or {}).get("last_run") is not None,
    )
    assert shown["policy"]["last_run"]["operation_id"] == ran.operation_id
    assert shown["policy"]["last_run"]["outside"] == len(DRIFTED)
    assert shown["policy"]["last_run"]["evaluated"] == len(IN_LINE) + len(DRIFTED)

    # The next week is another period; everyone is in line now, so nothing is requested.
    clock.now = monday + timedelta(days=7)
    (quiet,) = [o for o in await restarted.tick() if o.strategy_id == uuid.UUID(strategy["id"])]
    assert quiet.outcome == "nothing" and quiet.operation_id is None


async def test_a_halted_instrument_stops_runs_and_is_told_by_webhook(world: World) -> None:
    strategy = await enrolled(world)
    assert (await put_policy(world, strategy["id"], WEEKLY)).status_code == 200
    halted = Instrument("SOL", "USD", 8, Decimal("1.00"), InstrumentStatus.HALTED)
    await world.engine.call(world.engine.trading.list_instruments, [halted])
    try:
        clock = Clock(next_monday(datetime.now(UTC)))
        outcomes = await scheduler(world, clock).tick()
        (mine,) = [o for o in outcomes if o.strategy_id == uuid.UUID(strategy["id"])]
        assert mine.outcome == "skipped" and mine.detail == "needs adjustment"
        shown = await world.until(
            f"/strategies/{strategy['id']}", lambda got: got["status"] == "needs_adjustment"
        )
        assert shown["broken_assets"] == ["SOL"]
        hooks = await world.hooks_until(
            lambda got: any(
                p["id"] == strategy["id"] and p["status"] == "needs_adjustment" for p in got
            )
        )
        assert hooks
        # A new model without SOL is the adjustment.
        without_sol = [
            {"underlying_currency": "BTC", "weight": "0.60"},
            {"underlying_currency": "ETH", "weight": "0.40"},
        ]
        answer = await world.client.request(
            "PUT", f"/strategies/{strategy['id']}/model", {"allocations": without_sol}
        )
        assert answer.status_code == 200 and answer.json()["status"] == "active", answer.text
    finally:
        enabled = Instrument("SOL", "USD", 8, Decimal("1.00"))
        await world.engine.call(world.engine.trading.list_instruments, [enabled])


async def test_the_events_feed_carries_policies_runs_and_statuses(world: World) -> None:
    """Last in the module: by now the Strategies above set policies, ran and broke."""
    seen: set[str] = set()
    cursor = ""
    while True:
        answer = await world.client.get(f"/strategies/events?after={cursor}&limit=500")
        assert answer.status_code == 200, answer.text
        page = answer.json()
        seen |= {e["type"] for e in page["events"]}
        if page["next"] == cursor or page["caught_up"]:
            break
        cursor = page["next"]
    assert {
        "Strategy.ModelSet",
        "Strategy.PolicySet",
        "Strategy.PolicyRunRecorded",
        "Strategy.StatusChanged",
    } <= seen, seen


async def test_a_strategy_snapshot_in_postgresql_restores_its_policy_and_runs(
    world: World,
) -> None:
    """50 events make a Strategy snapshot; a process without a cache loads from it."""
    strategy = await enrolled(world)
    daily = {"calendar": {"frequency": "daily", "time": "00:00"}}
    assert (await put_policy(world, strategy["id"], daily)).status_code == 200
    clock = Clock(datetime.now(UTC))
    engine = world.engine

    async def this_one() -> list[uuid.UUID]:  # no wait for the read models each round
        return [uuid.UUID(strategy["id"])]

    ticking = PolicyScheduler(
        engine.trading, engine.venue, engine.commands, engine.call, this_one, clock=clock
    )
    for day in range(1, 52):
        clock.now = datetime.combine(
            datetime.now(UTC).date() + timedelta(days=day), datetime.min.time(), UTC
        ) + timedelta(hours=1)
        await ticking.tick()
    live = await engine.call(engine.trading.strategy, PLATFORM, uuid.UUID(strategy["id"]))
    fresh = await asyncio.to_thread(PostgresTrading, engine.database_url, cache_size=0)
    try:
        assert list(fresh.snapshots.get(live.id)) if fresh.snapshots else False
        loaded = await asyncio.to_thread(fresh.strategy, PLATFORM, live.id)
    finally:
        await asyncio.to_thread(fresh.close)
    assert loaded.policy == live.policy and loaded.policy_since == live.policy_since
    assert loaded.last_policy_run == live.last_policy_run and loaded.version == live.version
