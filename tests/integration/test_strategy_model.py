"""A Strategy's model over HTTP and the command topic: created with the Strategy or PUT as a
new version, shown by GET, used by Operation requests that send no allocations."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest

from infra.bus.messages import Command
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import Item, World, http_world
from tests.integration.pipeline.harness import BLUE_CHIP
from workers.commands import CommandService

pytestmark = pytest.mark.integration

PLATFORM = "MODEL1"
CODES = ["M1", "M2", "M3"]
SHIFTED = [
    {"underlying_currency": "BTC", "weight": "0.40"},
    {"underlying_currency": "ETH", "weight": "0.40"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "model") as url:
        async with http_world(url, tmp_path_factory.mktemp("model"), PLATFORM, CODES) as built:
            yield built


async def modelled(world: World) -> Item:
    created = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    assert created.status_code == 201, created.text
    strategy: Item = created.json()
    assert strategy["model"] == {"version": 1, "allocations": BLUE_CHIP}
    return strategy


async def put_model(
    world: World, strategy_id: str, body: Item, request_id: str | None = None
) -> httpx.Response:
    return await world.client.request(
        "PUT", f"/strategies/{strategy_id}/model", body, request_id=request_id
    )


async def test_a_model_is_set_shown_and_versioned_over_http(world: World) -> None:
    strategy = await modelled(world)
    request_id = str(uuid.uuid4())
    answer = await put_model(world, strategy["id"], {"allocations": SHIFTED}, request_id)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == {"version": 2, "allocations": SHIFTED}

    again = await put_model(world, strategy["id"], {"allocations": SHIFTED}, request_id)
    assert again.status_code == 200 and again.json()["model"]["version"] == 2  # a replay
    other = await put_model(world, strategy["id"], {"allocations": BLUE_CHIP}, request_id)
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"

    shown = await world.until(
        f"/strategies/{strategy['id']}", lambda got: (got.get("model") or {}).get("version") == 2
    )
    assert shown["model"] == {"version": 2, "allocations": SHIFTED}
    bare = await world.client.post("/strategies", {"quoted_currency": "USD"})
    assert bare.status_code == 201 and bare.json()["model"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"allocations": [{"underlying_currency": "BTC", "weight": "0.5"}]},
            400,
            "invalid_allocations",
        ),
        ({"allocations": [{"underlying_currency": "BTC", "weight": 1}]}, 400, "invalid_request"),
        ({"allocations": []}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
        ({"allocations": BLUE_CHIP, "version": 3}, 400, "invalid_request"),
    ],
)
async def test_a_bad_model_is_refused_and_changes_nothing(
    world: World, body: Item, status: int, code: str
) -> None:
    strategy = await modelled(world)
    answer = await put_model(world, strategy["id"], body)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code, answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")


async def test_only_its_platform_sets_a_strategys_model(world: World) -> None:
    strategy = await modelled(world)
    other = await world.another_platform("MODEL2")
    answer = await other.request(
        "PUT", f"/strategies/{strategy['id']}/model", {"allocations": SHIFTED}
    )
    assert answer.status_code == 404, answer.text


async def test_operations_without_allocations_trade_to_the_model(world: World) -> None:
    strategy = await modelled(world)
    people = [{"participant_code": c, "amount": "100.00"} for c in CODES]
    enrolled = await world.finished(
        await world.request(strategy["id"], "enroll", {"participants": people})
    )
    assert enrolled["status"] == "settled", enrolled
    assert enrolled["allocations"] == BLUE_CHIP
    assert enrolled["model_version"] == 1 and enrolled["origin"] == "request"

    assert (await put_model(world, strategy["id"], {"allocations": SHIFTED})).status_code == 200
    rebalanced = await world.finished(
        await world.request(strategy["id"], "rebalance", {"participants": CODES})
    )
    assert rebalanced["status"] == "settled", rebalanced
    assert rebalanced["allocations"] == SHIFTED


async def test_without_a_model_an_operation_still_needs_allocations(world: World) -> None:
    bare = await world.client.post("/strategies", {"quoted_currency": "USD"})
    people = [{"participant_code": c, "amount": "100.00"} for c in CODES]
    answer = await world.client.post(
        f"/strategies/{bare.json()['id']}/enroll", {"participants": people}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_allocations"


async def test_a_model_request_replays_across_http_and_the_command_topic(world: World) -> None:
    strategy = await modelled(world)
    service = CommandService(world.engine.trading, world.engine.call)
    request_id = uuid.uuid4()
    body = {"allocations": SHIFTED}
    over_kafka = await service.execute(
        PLATFORM,
        request_id,
        Command(command="set_model", strategy_id=UUID(strategy["id"]), body=body),
    )
    assert over_kafka.outcome == "accepted", over_kafka
    assert over_kafka.resource is not None and over_kafka.resource["model"]["version"] == 2
    over_http = await put_model(world, strategy["id"], body, str(request_id))
    assert over_http.status_code == 200 and over_http.json()["model"]["version"] == 2

    missing = await service.execute(PLATFORM, uuid.uuid4(), Command(command="set_model", body=body))
    assert missing.outcome == "rejected" and missing.error is not None
    assert missing.error.code == "invalid_request"
