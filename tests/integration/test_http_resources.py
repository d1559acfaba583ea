"""The objects the HTTP API answers, against what the webhooks said and what the write side
holds: Operations carry the webhook's fields, Traders their real positions and cash whoever
builds them, an Execution names only a Trader that exists, and a listed instrument trades."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from domain.operation import Operation
from domain.trader import Trader
from projections.filters import EXECUTION_FILTERS, OPERATION_FILTERS, TRADER_FILTERS, Filter
from projections.representations import operation_resource, trader_resource
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import Item, World, http_world
from workers.webhooks import EXECUTION_CHANGED, OPERATION_CHANGED

pytestmark = pytest.mark.integration

PLATFORM = "HTTPR1"
CODES = [f"R{i}" for i in range(6)]
#: The venue refuses firm quotes for this asset: an enrollment in it fails at pricing.
UNQUOTED = "LINK"
ALLOCATIONS = [
    {"underlying_currency": "BTC", "weight": "0.60"},
    {"underlying_currency": "ETH", "weight": "0.40"},
]


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with (
        scratch_database(postgres_url, "httpr") as url,
        pytest.MonkeyPatch.context() as environment,
    ):
        environment.setenv("STRATEGIES_VENUE_FAIL_QUOTES", UNQUOTED)
        async with http_world(
            url, tmp_path_factory.mktemp("http-resources"), PLATFORM, CODES
        ) as built:
            yield built


def funded(codes: list[str], allocations: list[Item] = ALLOCATIONS) -> Item:
    people = [{"participant_code": code, "amount": "250.00"} for code in codes]
    return {"allocations": allocations, "participants": people}


def hooks_about(payloads: list[Item], kind: str, object_id: str) -> list[Item]:
    return [p for p in payloads if p.get("id") == object_id and _kind(p) == kind]


def _kind(payload: Item) -> str:
    return EXECUTION_CHANGED if "operation_id" in payload else OPERATION_CHANGED


# -- Operations ----------------------------------------------------------------------------
async def test_a_settled_operation_reads_exactly_as_its_last_webhook(world: World) -> None:
    sid = await world.strategy()
    requested = await world.request(sid, "enroll", funded(CODES[:3]))
    done = await world.finished(requested)
    assert done["status"] == "settled", done

    def settled_hook(payloads: list[Item]) -> bool:
        mine = hooks_about(payloads, OPERATION_CHANGED, requested["id"])
        return any(p["status"] == "settled" for p in mine)

    payloads = await world.hooks_until(settled_hook)
    last = hooks_about(payloads, OPERATION_CHANGED, requested["id"])[-1]  # by updated_at
    got = (await world.client.get(f"/strategies/operations/{requested['id']}")).json()
    assert got == last
    assert got["counts"] == {"approved": 3, "rejected": 0, "skipped": 0, "settled": 3}
    assert set(got["locked_prices"]) == {"BTC", "ETH"}
    # The write side (POST answers, reads before the projections caught up) says the same.
    written = await world.engine.call(world.engine.trading.find, UUID(got["id"]), Operation)
    assert operation_resource(written) == got
    assert set(requested) == set(got)


# -- Traders -------------------------------------------------------------------------------
async def test_a_patched_trader_answers_its_real_positions_and_cash(world: World) -> None:
    sid = await world.strategy()
    done = await world.finished(await world.request(sid, "enroll", funded(["R0"])))
    assert done["status"] == "settled", done
    listed = await world.until(
        f"/strategies/traders?strategy_id={sid}", lambda page: len(page["message"]) == 1
    )
    before = listed["message"][0]
    assert set(before["positions"]) == {"BTC", "ETH"}
    assert all(Decimal(q) > 0 for q in before["positions"].values())

    patched = await world.client.request(
        "PATCH", f"/strategies/traders/{before['id']}", {"auto_rebalance": True}
    )
    assert patched.status_code == 200, patched.text
    answer = patched.json()
    assert (answer["positions"], answer["cash"]) == (before["positions"], before["cash"])
    projected = await world.until(
        f"/strategies/traders/{before['id']}", lambda trader: trader["auto_rebalance"]
    )
    assert answer == projected  # what the PATCH said is what the read model shows
    written = await world.engine.call(world.engine.trading.find, UUID(before["id"]), Trader)
    assert trader_resource(written) == projected  # and what a read before catching up shows


# -- Executions ----------------------------------------------------------------------------
async def test_every_trader_id_an_execution_shows_resolves(world: World) -> None:
    """R5's enrollment fails at pricing, so its Trader stays pending (never visible); a top-up
    of R5 is then rejected naming that Trader in the domain's record. Neither Execution may
    show its id, in the API or in a webhook; R4's settled enrollment shows its own."""
    sid = await world.strategy()
    unquoted = [{"underlying_currency": UNQUOTED, "weight": "1"}]
    failed = await world.finished(await world.request(sid, "enroll", funded(["R5"], unquoted)))
    assert (failed["status"], failed["status_reason"]) == ("failed", "pricing_failed")
    rejected = await world.finished(await world.request(sid, "top-up", funded(["R5"])))
    assert (rejected["status"], rejected["status_reason"]) == ("failed", "all_rejected")
    settled = await world.finished(await world.request(sid, "enroll", funded(["R4"])))
    assert settled["status"] == "settled"
    await world.caught_up()

    page = await world.client.get(f"/strategies/executions?strategy_id={sid}")
    executions = page.json()["message"]
    assert len(executions) == 3
    by_operation = {e["operation_id"]: e for e in executions}
    assert by_operation[rejected["id"]]["status_reasons"] == ["trader_not_found"]
    for gone in (by_operation[failed["id"]], by_operation[rejected["id"]]):
        assert (gone["trader_id"], gone["account_label"]) == ("", ""), gone
        one = (await world.client.get(f"/strategies/executions/{gone['id']}")).json()
        assert (one["trader_id"], one["account_label"]) == ("", "")
    assert by_operation[settled["id"]]["trader_id"] != ""
    for execution in executions:
        if execution["trader_id"]:
            trader = await world.client.get(f"/strategies/traders/{execution['trader_id']}")
            assert trader.status_code == 200, execution
            assert execution["account_label"] == trader.json()["account_label"] == sid

    pending = await world.engine.call(
        world.engine.trading.find, Trader.create_id(UUID(sid), "R5"), Trader
    )
    assert pending is not None and pending.status.value == "pending"
    listed = await world.client.get(f"/strategies/executions?trader_id={pending.id}")
    assert listed.json()["message"] == []  # a Trader that does not exist names nothing

    ids = {e["id"] for e in executions}

    def every_execution_hook(payloads: list[Item]) -> bool:
        return {p["id"] for p in payloads if _kind(p) == EXECUTION_CHANGED} >= ids

    payloads = await world.hooks_until(every_execution_hook)
    for payload in payloads:
        if _kind(payload) == EXECUTION_CHANGED and payload["id"] in ids:
            if payload["participant_code"] == "R5":
                assert (payload["trader_id"], payload["account_label"]) == ("", ""), payload
            elif payload["trader_id"]:
                trader = await world.client.get(f"/strategies/traders/{payload['trader_id']}")
                assert trader.status_code == 200, payload


# -- the instrument catalogue --------------------------------------------------------------
async def test_an_instrument_put_is_listed_and_trades_by_its_new_terms(world: World) -> None:
    def listing(status: str, precision: int) -> Item:
        return {
            "asset": "DOT",
            "quoted_currency": "USD",
            "precision": precision,
            "min_notional": "5.00",
            "status": status,
        }

    async def put(item: Item) -> list[Item]:
        answer = await world.http.put(
            "/admin/instruments", json={"instruments": [item]}, headers=world.admin
        )
        assert answer.status_code == 200, answer.text
        catalogue: list[Item] = answer.json()
        return catalogue

    async def dot_usd() -> Item:
        answer = await world.http.get("/admin/instruments", headers=world.admin)
        assert answer.status_code == 200, answer.text
        return next(
            i for i in answer.json() if (i["asset"], i["quoted_currency"]) == ("DOT", "USD")
        )

    only_dot = [{"underlying_currency": "DOT", "weight": "1"}]
    assert listing("disabled", 8) in await put(listing("disabled", 8))
    assert await dot_usd() == listing("disabled", 8)
    sid = await world.strategy()
    refused = await world.client.post(f"/strategies/{sid}/enroll", funded(["R1"], only_dot))
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"] == [
        {"field": "allocations[0].underlying_currency", "message": "DOT/USD is disabled"}
    ]

    assert listing("enabled", 3) in await put(listing("enabled", 3))
    assert await dot_usd() == listing("enabled", 3)
    traded = await world.finished(await world.request(sid, "enroll", funded(["R1"], only_dot)))
    assert traded["status"] == "settled", traded
    trader = await world.until(
        f"/strategies/traders?strategy_id={sid}", lambda page: len(page["message"]) == 1
    )
    quantity = Decimal(trader["message"][0]["positions"]["DOT"])
    assert quantity > 0 and quantity == quantity.quantize(Decimal("0.001"))


# -- Filters -------------------------------------------------------------------------------
LISTS = {
    "/strategies/traders": TRADER_FILTERS,
    "/strategies/operations": OPERATION_FILTERS,
    "/strategies/executions": EXECUTION_FILTERS,
}


async def test_every_declared_filter_narrows_its_list(world: World) -> None:
    """Each filter a list declares is applied: asked for a listed item's own value, the list
    keeps that item and only items that match it (`created_at[lt]` drops it)."""
    sid = await world.strategy()
    done = await world.finished(await world.request(sid, "enroll", funded(CODES[:2])))
    assert done["status"] == "settled", done
    await world.caught_up()
    for path, declared in LISTS.items():
        everything = (await world.client.get(f"{path}?size=200")).json()["message"]
        named = (i for i in everything if i.get("trader_id") != "")  # an Execution names its Trader
        sample = next(i for i in named if i["strategy_id"] == sid)
        # The drift filters need a model and prices: tests/integration/test_drift_http.py.
        for each in (f for f in declared if not f.computed):
            value = sample[each.column]
            text = str(value).lower() if isinstance(value, bool) else value
            got = await world.client.get(f"{path}?{each.query or each.name}={text}&size=200")
            assert got.status_code == 200, (path, each.name, got.text)
            listed = got.json()["message"]
            assert (sample in listed) is (each.operator != "<"), (path, each.name)
            assert all(_matches(each, item[each.column], value) for item in listed), each.name


def _matches(declared: Filter, got: Any, bound: Any) -> bool:
    if declared.kind is datetime:
        got, bound = datetime.fromisoformat(got), datetime.fromisoformat(bound)
    return {"=": got == bound, ">=": got >= bound, "<": got < bound}[declared.operator]
