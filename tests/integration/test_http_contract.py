"""What the HTTP API accepts, on the real routes: strict booleans, the configured request
limits, and request-id replays and conflicts of every Operation route."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import Item, World, http_world

pytestmark = pytest.mark.integration

PLATFORM = "HTTPC1"
CODES = [f"C{i}" for i in range(8)]
MAX_PARTICIPANTS, MAX_ALLOCATIONS = 6, 4
ALLOCATIONS = [
    {"underlying_currency": "BTC", "weight": "0.60"},
    {"underlying_currency": "ETH", "weight": "0.40"},
]
#: JSON values that lax parsing would take for a boolean; none of them is one.
NOT_BOOLEANS: list[Any] = ["yes", "on", "true", "1", 1, 0, None, [], {}]


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "httpc") as url:
        async with http_world(
            url,
            tmp_path_factory.mktemp("http-contract"),
            PLATFORM,
            CODES,
            max_participants=MAX_PARTICIPANTS,
            max_allocations=MAX_ALLOCATIONS,
        ) as built:
            yield built


def funded(codes: list[str], amount: str = "10.00", **extra: Any) -> Item:
    people = [{"participant_code": code, "amount": amount, **extra} for code in codes]
    return {"allocations": ALLOCATIONS, "participants": people}


def assert_refused(answer: Any, code: str, field: str) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["code"] == code, problem
    assert field in [error["field"] for error in problem["errors"]], problem


# -- booleans ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
async def test_auto_rebalance_of_an_enrollment_must_be_a_json_boolean(
    world: World, value: Any
) -> None:
    sid = await world.strategy()
    answer = await world.client.post(
        f"/strategies/{sid}/enroll", funded(["C0"], auto_rebalance=value)
    )
    assert_refused(answer, "invalid_request", "participants[0].auto_rebalance")


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
async def test_all_of_a_liquidation_must_be_a_json_boolean(world: World, value: Any) -> None:
    sid = await world.strategy()
    answer = await world.client.post(f"/strategies/{sid}/liquidate", {"all": value})
    assert_refused(answer, "invalid_request", "all")


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
async def test_auto_rebalance_of_a_trader_change_must_be_a_json_boolean(
    world: World, value: Any
) -> None:
    path = f"/strategies/traders/{uuid.uuid4()}"  # the body is refused before any lookup
    answer = await world.client.request("PATCH", path, {"auto_rebalance": value})
    assert_refused(answer, "invalid_request", "auto_rebalance")


@pytest.mark.parametrize("value", NOT_BOOLEANS, ids=repr)
async def test_legacy_headers_of_a_subscription_must_be_a_json_boolean(
    world: World, value: Any
) -> None:
    body = {
        "url": "http://127.0.0.1:9/hooks",
        "payload_types": ["trade_strategy.trader.created"],
        "legacy_headers": value,
    }
    answer = await world.http.post(
        f"/admin/platforms/{PLATFORM}/webhooks", json=body, headers=world.admin
    )
    assert_refused(answer, "invalid_request", "legacy_headers")


async def test_json_booleans_are_taken(world: World) -> None:
    sid = await world.strategy()
    enrolled = await world.client.post(
        f"/strategies/{sid}/enroll", funded(["C0", "C1"], auto_rebalance=True)
    )
    assert enrolled.status_code == 202, enrolled.text
    everyone = await world.client.post(f"/strategies/{sid}/liquidate", {"all": True})
    assert everyone.status_code == 202, everyone.text
    nobody = await world.client.post(f"/strategies/{sid}/liquidate", {"all": False})
    # `all: false` was read as false: then the participants must be named.
    assert_refused(nobody, "invalid_request", "participants")
    assert nobody.json()["detail"] == "participants are required"


# -- configured limits ---------------------------------------------------------------------
async def test_a_lowered_participant_limit_is_enforced(world: World) -> None:
    sid = await world.strategy()
    over = await world.client.post(
        f"/strategies/{sid}/enroll", funded(CODES[: MAX_PARTICIPANTS + 1])
    )
    assert_refused(over, "invalid_participants", "participants")
    assert f"at most {MAX_PARTICIPANTS}" in over.json()["detail"]
    at_limit = await world.client.post(
        f"/strategies/{sid}/enroll", funded(CODES[:MAX_PARTICIPANTS])
    )
    assert at_limit.status_code == 202, at_limit.text


async def test_a_lowered_allocation_limit_is_enforced(world: World) -> None:
    sid = await world.strategy()
    assets = ["BTC", "ETH", "SOL", "ADA", "AVAX"]
    weights = ["0.20"] * len(assets)
    over = {
        "allocations": [
            {"underlying_currency": a, "weight": w} for a, w in zip(assets, weights, strict=True)
        ],
        "participants": [{"participant_code": "C0", "amount": "10.00"}],
    }
    assert_refused(
        await world.client.post(f"/strategies/{sid}/enroll", over),
        "invalid_allocations",
        "allocations",
    )
    at_limit = dict(over, allocations=[dict(a, weight="0.25") for a in over["allocations"][:4]])
    answer = await world.client.post(f"/strategies/{sid}/enroll", at_limit)
    assert answer.status_code == 202, answer.text


# -- request ids on the Operation routes ---------------------------------------------------
OPERATION_REQUESTS: list[tuple[str, Item, Item]] = [
    ("enroll", funded(["C2"]), funded(["C2"], amount="11.00")),
    ("top-up", funded(["C2"]), funded(["C3"])),
    ("partial-sell", funded(["C2"], amount="1.00"), funded(["C2"], amount="2.00")),
    (
        "rebalance",
        {"allocations": ALLOCATIONS, "participants": ["C2"]},
        {"allocations": ALLOCATIONS, "participants": ["C3"]},
    ),
    (
        "liquidate",
        {"participants": [{"participant_code": "C2"}]},
        {"participants": [{"participant_code": "C3"}]},
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "other"), OPERATION_REQUESTS, ids=[r[0] for r in OPERATION_REQUESTS]
)
async def test_an_operation_request_replays_its_operation_and_refuses_another_body(
    world: World, path: str, body: Item, other: Item
) -> None:
    sid = await world.strategy()
    request_id = str(uuid.uuid4())
    first = await world.client.post(f"/strategies/{sid}/{path}", body, request_id=request_id)
    assert first.status_code == 202, first.text
    operation = first.json()

    again = await world.client.post(f"/strategies/{sid}/{path}", body, request_id=request_id)
    assert again.status_code == 200, again.text
    assert again.headers["X-REQUEST-ID"] == request_id
    replayed = again.json()
    assert (replayed["id"], replayed["request_id"]) == (operation["id"], request_id)
    assert replayed["created_at"] == operation["created_at"]

    conflict = await world.client.post(f"/strategies/{sid}/{path}", other, request_id=request_id)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["code"] == "idempotency_conflict"

    await world.caught_up()  # so that a list can show what was not written
    listed = (await world.client.get(f"/strategies/operations?strategy_id={sid}")).json()
    assert [o["id"] for o in listed["message"]] == [operation["id"]]
