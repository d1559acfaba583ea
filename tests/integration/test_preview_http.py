"""Previews over HTTP (and the command topic) on the real engine: a preview, then the same
request with the prices unchanged, gives the same legs per participant and the same
exclusions; a preview writes nothing, needs no X-REQUEST-ID, pages like a list and is
refused as the request would be."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from infra.bus.messages import Command
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import Item, World, http_world
from tests.integration.pipeline.harness import BLUE_CHIP

pytestmark = pytest.mark.integration

PLATFORM = "PREVIEW1"
CODES = ["V1", "V2", "V3", "V4", "V5", "V6"]
SKEWED = [
    {"underlying_currency": "BTC", "weight": "0.70"},
    {"underlying_currency": "ETH", "weight": "0.30"},
]


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    # A venue without spread: firm quotes at the indicative mid, so the prices the preview
    # sees are the prices the real run locks (the venue moves only when told to).
    with pytest.MonkeyPatch.context() as env, scratch_database(postgres_url, "preview") as url:
        env.setenv("STRATEGIES_VENUE_SPREAD", "0")
        async with http_world(url, tmp_path_factory.mktemp("preview"), PLATFORM, CODES) as built:
            yield built


def signed(world: World, path: str, body: Any) -> tuple[bytes, dict[str, str]]:
    content = json.dumps(body).encode()
    return content, world.client.headers("POST", path, content)


async def preview(world: World, strategy_id: str, kind: str, body: Any, query: str = "") -> Item:
    """A preview sent as a platform would: signed, without X-REQUEST-ID."""
    path = f"/strategies/{strategy_id}/{kind}/preview{query}"
    content, headers = signed(world, path, body)
    answer = await world.http.post(path, content=content, headers=headers)
    assert answer.status_code == 200, answer.text
    assert "X-REQUEST-ID" not in answer.headers
    found: Item = answer.json()
    return found


async def all_pages(world: World, strategy_id: str, kind: str, body: Any) -> list[Item]:
    first = await preview(world, strategy_id, kind, body, "?size=2")
    lines = list(first["message"])
    for page in range(2, first["total_pages"] + 1):
        lines += (await preview(world, strategy_id, kind, body, f"?size=2&page={page}"))["message"]
    return lines


async def executions(world: World, operation_id: str) -> list[Item]:
    answer = await world.client.get(f"/strategies/executions?operation_id={operation_id}&size=200")
    assert answer.status_code == 200, answer.text
    found: list[Item] = answer.json()["message"]
    return found


def as_previewed(execution: Item) -> tuple[str, list[str], list[tuple[str, str, str, str]]]:
    status = {"settled": "approved"}.get(execution["status"], execution["status"])
    legs = [
        (i["side"], i["underlying_currency"], i["quantity"], i["total_notional"])
        for i in execution["instructions"]
        if i["status"] == "filled"
    ]
    return status, execution["status_reasons"], sorted(legs)


def previewed(line: Item) -> tuple[str, list[str], list[tuple[str, str, str, str]]]:
    legs = [
        (leg["side"], leg["underlying_currency"], leg["quantity"], leg["notional"])
        for leg in line["legs"]
    ]
    return line["outcome"], line["status_reasons"], sorted(legs)


async def events_written(world: World) -> int:
    count: int = await world.engine.pool.fetchval("SELECT count(*) FROM trading_events")
    return count


async def same_run(world: World, strategy_id: str, kind: str, body: Item) -> list[Item]:
    """Preview (nothing written), then request: the same outcome for every participant."""
    before = await events_written(world)
    lines = await all_pages(world, strategy_id, kind, body)
    assert await events_written(world) == before, "a preview wrote events"
    operation = await world.finished(await world.request(strategy_id, kind, body))
    await world.caught_up()
    ran = {e["participant_code"]: as_previewed(e) for e in await executions(world, operation["id"])}
    assert {line["participant_code"]: previewed(line) for line in lines} == ran
    return lines


async def test_a_preview_is_the_run_that_follows_when_prices_do_not_move(world: World) -> None:
    created = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    strategy_id = created.json()["id"]
    enroll = {
        "participants": [
            *(
                {"participant_code": c, "amount": "100.00", "auto_rebalance": True}
                for c in CODES[:-1]
            ),
            {"participant_code": "UNKNOWN", "amount": "100.00"},
            {"participant_code": "V6", "amount": "0.01"},
        ]
    }
    lines = await same_run(world, strategy_id, "enroll", enroll)
    reasons = {line["status_reason"] for line in lines if line["outcome"] != "approved"}
    assert reasons == {"participant_ineligible", "dust"}

    admin = f"/admin/platforms/{PLATFORM}/participants"
    suspend = {"participants": [{"participant_code": "V2", "status": "suspended"}]}
    answer = await world.http.put(admin, json=suspend, headers=world.admin)
    assert answer.status_code == 200, answer.text
    rebalance = {"allocations": SKEWED}
    lines = await same_run(world, strategy_id, "rebalance", rebalance)
    by_code = {line["participant_code"]: line for line in lines}
    assert by_code["V2"]["status_reasons"] == ["participant_ineligible"]
    assert by_code["V3"]["outcome"] == "approved" and by_code["V3"]["legs"]

    sell: Item = {
        "allocations": SKEWED,
        "participants": [{"participant_code": c, "amount": "20.00"} for c in CODES[2:5]],
    }
    sell["participants"].append({"participant_code": "V1", "amount": "5000.00"})
    lines = await same_run(world, strategy_id, "partial-sell", sell)
    assert [x["status_reason"] for x in lines if x["outcome"] != "approved"] == [
        "insufficient_balance"
    ]


async def test_a_preview_pages_counts_and_summarises(world: World) -> None:
    admin = f"/admin/platforms/{PLATFORM}/participants"
    eligible = {"participants": [{"participant_code": c} for c in CODES]}
    assert (await world.http.put(admin, json=eligible, headers=world.admin)).status_code == 200
    created = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    strategy_id = created.json()["id"]
    body = {"participants": [{"participant_code": c, "amount": "50.00"} for c in [*CODES, "X"]]}
    found = await preview(world, strategy_id, "enroll", body, "?page=2&size=3")
    assert (found["page"], found["size"], found["total_pages"]) == (2, 3, 3)
    assert [line["participant_code"] for line in found["message"]] == ["V4", "V5", "V6"]
    summary = found["summary"]
    assert summary["participant_count"] == 7
    assert summary["counts"] == {"approved": 6, "rejected": 1, "skipped": 0}
    assert summary["reasons"] == {"participant_ineligible": 1}
    assert summary["float"]["needed"] == "300.00" and summary["float"]["shortfall"] == "0.00"
    assert set(summary["totals"]) == {"BTC", "ETH", "SOL"}
    btc = summary["totals"]["BTC"]
    assert btc["block"] == {"side": "buy", "quantity": btc["gross_buy_quantity"]}
    assert set(summary["prices"]) >= {"BTC", "ETH", "SOL"} and summary["priced_at"]
    model = summary["allocations"]
    assert [a["underlying_currency"] for a in model] == ["BTC", "ETH", "SOL"]

    only = await preview(world, strategy_id, "enroll", body, "?summary_only=true")
    assert only["message"] is None and only["page"] is None
    assert only["summary"]["counts"] == summary["counts"]


async def test_a_preview_needs_no_request_id_and_may_be_sent_again(world: World) -> None:
    strategy_id = await world.strategy()
    path = f"/strategies/{strategy_id}/liquidate/preview"
    content, headers = signed(world, path, {"all": True})
    for _ in range(2):  # the same signature twice: a preview changes nothing
        answer = await world.http.post(path, content=content, headers=headers)
        assert answer.status_code == 200, answer.text
    assert answer.json()["summary"]["participant_count"] == 0


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?summary_only=yes", "invalid_request"),
        ("?size=201", "invalid_request"),
        ("?page=0", "invalid_request"),
        ("?summary=true", "unknown_filter"),
    ],
)
async def test_a_preview_reads_its_query_strictly(world: World, query: str, code: str) -> None:
    strategy_id = await world.strategy()
    path = f"/strategies/{strategy_id}/liquidate/preview{query}"
    content, headers = signed(world, path, {"all": True})
    answer = await world.http.post(path, content=content, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == code, answer.json()


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("enroll", {"participants": [{"participant_code": "V1", "amount": "10.00"}]}),
        ("top-up", {"allocations": [{"underlying_currency": "BTC", "weight": "0.5"}]}),
        ("rebalance", {"allocations": BLUE_CHIP, "drift_tolerance": "1.5"}),
        ("liquidate", {"all": True, "participants": [{"participant_code": "V1"}]}),
        ("partial-sell", {"participants": [], "allocations": BLUE_CHIP}),
    ],
)
async def test_a_preview_is_refused_as_its_request_would_be(
    world: World, kind: str, body: Item
) -> None:
    strategy_id = await world.strategy()
    path = f"/strategies/{strategy_id}/{kind}/preview"
    content, headers = signed(world, path, body)
    previewing = await world.http.post(path, content=content, headers=headers)
    requesting = await world.client.post(f"/strategies/{strategy_id}/{kind}", body)
    assert previewing.status_code == requesting.status_code == 400, previewing.text
    refusal, expected = previewing.json(), requesting.json()
    assert (refusal["code"], refusal.get("errors")) == (expected["code"], expected.get("errors"))


async def test_another_platforms_strategy_is_not_found(world: World) -> None:
    strategy_id = await world.strategy()
    other = await world.another_platform("PREVIEW2")
    path = f"/strategies/{strategy_id}/liquidate/preview"
    content = json.dumps({"all": True}).encode()
    answer = await world.http.post(
        path, content=content, headers=other.headers("POST", path, content)
    )
    assert answer.status_code == 404 and answer.json()["code"] == "strategy_not_found"


async def test_the_command_topic_previews_as_http_does(world: World) -> None:
    created = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    strategy_id = created.json()["id"]
    body = {"participants": [{"participant_code": c, "amount": "10.00"} for c in CODES]}
    over_http = await preview(world, strategy_id, "enroll", body)
    before = await events_written(world)
    record = {"type": "enroll", "body": body}
    request_id = uuid.uuid4()
    answer = await world.engine.commands.execute(
        PLATFORM,
        request_id,
        Command(command="preview", strategy_id=uuid.UUID(strategy_id), body=record),
    )
    assert await events_written(world) == before
    assert (answer.outcome, answer.resource_type) == ("accepted", "preview"), answer
    assert answer.resource is not None
    assert answer.resource["message"] == over_http["message"]
    summary = {k: v for k, v in answer.resource["summary"].items() if k != "priced_at"}
    assert summary == {k: v for k, v in over_http["summary"].items() if k != "priced_at"}
    # Not idempotency-keyed: the same request id again is answered again, never a replay.
    again = await world.engine.commands.execute(
        PLATFORM,
        request_id,
        Command(command="preview", strategy_id=uuid.UUID(strategy_id), body=record),
    )
    assert again.outcome == "accepted"
    missing = await world.engine.commands.execute(
        PLATFORM, uuid.uuid4(), Command(command="preview", strategy_id=uuid.uuid4(), body=record)
    )
    assert missing.outcome == "rejected" and missing.error is not None
    assert missing.error.code == "strategy_not_found"
