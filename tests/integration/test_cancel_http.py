"""Cancelling an Operation over HTTP and the command topic: accepted while it is not priced,
refused after; the Operation and its Executions end cancelled, told by webhooks."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from infra.bus.messages import Command
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import Item, World, http_world
from tests.integration.pipeline.harness import BLUE_CHIP
from workers.commands import CommandService

pytestmark = pytest.mark.integration

PLATFORM = "CANCEL1"
CODES = ["K1", "K2", "K3", "K4", "K5"]


@pytest.fixture(scope="module")
def slow_venue() -> Iterator[None]:
    """Every venue call takes 0.4 s: an Operation stays validating long enough to cancel
    (its check asks the venue for prices first; the cancellation is one request away)."""
    before = os.environ.get("STRATEGIES_VENUE_LATENCY_MS")
    os.environ["STRATEGIES_VENUE_LATENCY_MS"] = "400"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("STRATEGIES_VENUE_LATENCY_MS")
        else:
            os.environ["STRATEGIES_VENUE_LATENCY_MS"] = before


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory, slow_venue: None
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "cancel") as url:
        async with http_world(url, tmp_path_factory.mktemp("cancel"), PLATFORM, CODES) as built:
            yield built


async def enrolling(world: World) -> Item:
    strategy = await world.strategy()
    people = [{"participant_code": c, "amount": "100.00"} for c in CODES]
    return await world.request(
        strategy, "enroll", {"allocations": BLUE_CHIP, "participants": people}
    )


async def cancel(world: World, operation_id: str, request_id: str | None = None) -> Item:
    answer = await world.client.request(
        "POST", f"/strategies/operations/{operation_id}/cancel", {}, request_id=request_id
    )
    return {"status_code": answer.status_code, **answer.json()}


async def test_a_validating_operation_is_cancelled_and_told(world: World) -> None:
    operation = await enrolling(world)
    request_id = str(uuid.uuid4())
    answer = await cancel(world, operation["id"], request_id)
    assert answer["status_code"] == 202, answer
    assert (await cancel(world, operation["id"], request_id))["status_code"] == 200  # a replay
    done = await world.finished(operation)
    assert done["status"] == "cancelled" and done["status_reason"] == "cancelled_by_platform"
    assert done["counts"]["cancelled"] == len(CODES)
    executions = await world.until(
        f"/strategies/executions?operation_id={operation['id']}",
        lambda page: len(page["message"]) == len(CODES),
    )
    assert {e["status"] for e in executions["message"]} == {"cancelled"}
    assert {e["status_reason"] for e in executions["message"]} == {"cancelled_by_platform"}
    hooks = await world.hooks_until(
        lambda got: any(p.get("id") == operation["id"] and p["status"] == "cancelled" for p in got)
    )
    assert any(
        p.get("operation_id") == operation["id"] and p["status"] == "cancelled" for p in hooks
    )


async def test_a_settled_operation_cannot_be_cancelled(world: World) -> None:
    done = await world.finished(await enrolling(world))
    assert done["status"] == "settled"
    answer = await cancel(world, done["id"])
    assert answer["status_code"] == 409 and answer["code"] == "operation_not_cancellable"
    assert "settled" in answer["detail"]


async def test_only_its_platform_cancels_an_operation(world: World) -> None:
    operation = await enrolling(world)
    other = await world.another_platform("CANCEL2")
    answer = await other.request("POST", f"/strategies/operations/{operation['id']}/cancel", {})
    assert answer.status_code == 404, answer.text
    missing = await cancel(world, str(uuid.uuid4()))
    assert missing["status_code"] == 404 and missing["code"] == "operation_not_found"
    assert (await world.finished(operation))["status"] == "settled"


async def test_a_cancellation_over_the_command_topic(world: World) -> None:
    operation = await enrolling(world)
    service = CommandService(world.engine.trading, world.engine.call)
    result = await service.execute(
        PLATFORM,
        uuid.uuid4(),
        Command(command="cancel_operation", body={"operation_id": operation["id"]}),
    )
    assert result.outcome == "accepted", result
    assert (await world.finished(operation))["status"] == "cancelled"
    bad = await service.execute(
        PLATFORM, uuid.uuid4(), Command(command="cancel_operation", body={"operation_id": 7})
    )
    assert bad.outcome == "rejected" and bad.error is not None
    assert bad.error.code == "invalid_request"
