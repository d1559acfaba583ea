"""Drift over HTTP (issue 18): `GET /strategies/{id}/drift` summed exactly from the Traders'
positions at the latest prices the read models learnt from the Operations, the `drift`
filters of the Traders list paging like the list, refusals with their codes, and the SQL
filter selecting exactly the Traders the domain's arithmetic does (edges included)."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import asyncpg
import pytest

from domain.allocations import Allocation, Allocations
from domain.drift import Targets, trader_drift
from domain.legs import Holdings
from domain.policy import DriftBand
from projections import queries
from projections.prices import PriceRow, price_id
from projections.schema import codec
from projections.strategies import StrategyRow
from projections.tables import ensure_scratch
from projections.traders import TraderRow
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import Item, World, http_world
from tests.integration.pipeline.harness import BLUE_CHIP

pytestmark = pytest.mark.integration

D = Decimal
PLATFORM = "DRIFT1"
IN_LINE = {"L1": "100.00", "L2": "250.00"}
DRIFTED = {"D1": "100.00", "D2": "300.00", "D3": "175.50"}
GONE = "Q1"
SKEWED = [
    {"underlying_currency": "BTC", "weight": "0.80"},
    {"underlying_currency": "ETH", "weight": "0.10"},
    {"underlying_currency": "SOL", "weight": "0.10"},
]
POLICY = {"drift_band": {"absolute": "0.05"}, "cash_buffer": "0.01"}
BANDS = ("0.01", "0.02", "0.05", "0.10")


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "drift") as url:
        codes = [*IN_LINE, *DRIFTED, GONE]
        async with http_world(url, tmp_path_factory.mktemp("drift"), PLATFORM, codes) as built:
            yield built


@pytest.fixture(scope="module")
async def drifted(world: World) -> Item:
    """A Strategy with a model and a policy: two Traders bought on the model, three on a
    skewed mix, one liquidated; the liquidation is the last Operation to price."""
    created = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    assert created.status_code == 201, created.text
    strategy: Item = created.json()
    groups: list[tuple[dict[str, str], Item]] = [
        ({**IN_LINE, GONE: "80.00"}, {}),
        (DRIFTED, {"allocations": SKEWED}),
    ]
    for amounts, extra in groups:
        people = [
            {"participant_code": c, "amount": a, "auto_rebalance": True} for c, a in amounts.items()
        ]
        operation = await world.request(strategy["id"], "enroll", {"participants": people, **extra})
        assert (await world.finished(operation))["status"] == "settled"
    gone = await world.request(
        strategy["id"], "liquidate", {"participants": [{"participant_code": GONE}]}
    )
    strategy["liquidation"] = await world.finished(gone)
    assert strategy["liquidation"]["status"] == "settled"
    answer = await world.client.request("PUT", f"/strategies/{strategy['id']}/policy", POLICY)
    assert answer.status_code == 200, answer.text
    await world.caught_up()
    return strategy


async def traders_of(world: World, strategy_id: str, query: str = "") -> list[Item]:
    answer = await world.client.get(
        f"/strategies/traders?strategy_id={strategy_id}{query}&size=200"
    )
    assert answer.status_code == 200, answer.text
    found: list[Item] = answer.json()["message"]
    return found


def expected(traders: list[Item], prices: dict[str, Decimal]) -> dict[str, Any]:
    """The summary worked out here by hand, quotients and all: weights = q * p / V against
    the model less the 1% buffer (and 1% of cash)."""
    targets = {a["underlying_currency"]: D(a["weight"]) * D("0.99") for a in BLUE_CHIP}
    drifts: dict[str, Decimal] = {}
    out_of_line = D(0)
    for trader in traders:
        held = {a: D(q) for a, q in trader["positions"].items()}
        cash = D(trader["cash"])
        value = cash + sum(q * prices[a] for a, q in held.items())
        gaps = {
            a: abs(held.get(a, D(0)) * prices.get(a, D(0)) / value - targets.get(a, D(0)))
            for a in {*targets, *held}
        }
        drifts[trader["participant_code"]] = max(gaps.values())
        out_of_line += value * (sum(gaps.values()) + abs(cash / value - D("0.01"))) / 2
    return {
        "drifts": drifts,
        "largest_drift": max(drifts.values()).quantize(D("0.000001"), rounding=ROUND_FLOOR),
        "value_out_of_line": out_of_line.quantize(D("0.01"), rounding=ROUND_FLOOR),
        "beyond": {b: sum(d > D(b) for d in drifts.values()) for b in BANDS},
        "outside": {c for c, d in drifts.items() if d > D("0.05")},
    }


async def test_the_summary_counts_every_active_trader_at_the_latest_prices(
    world: World, drifted: Item
) -> None:
    answer = await world.client.get(f"/strategies/{drifted['id']}/drift")
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    locked = drifted["liquidation"]["locked_prices"]
    assert {a: p["price"] for a, p in summary["prices"].items()} == {
        a: q["price"] for a, q in locked.items()
    }
    assert all(p["priced_at"].endswith("Z") for p in summary["prices"].values())
    prices = {a: D(p["price"]) for a, p in summary["prices"].items()}
    traders = await traders_of(world, drifted["id"])
    active = [t for t in traders if t["status"] == "active"]
    assert sorted(t["participant_code"] for t in active) == sorted([*IN_LINE, *DRIFTED])
    want = expected(active, prices)
    assert summary == {
        "strategy_id": drifted["id"],
        "quoted_currency": "USD",
        "model_version": 1,
        "policy_version": 1,
        "drift_band": {"absolute": "0.05"},
        "cash_buffer": "0.01",
        "prices": summary["prices"],
        "traders": 5,
        "unpriced": 0,
        "excluded": {"liquidated": 1, "empty": 0},
        "largest_drift": str(want["largest_drift"]),
        "value_out_of_line": str(want["value_out_of_line"]),
        "beyond": want["beyond"],
        "outside_policy_band": len(want["outside"]),
    }
    assert want["outside"] == set(DRIFTED)  # the skewed mix is 30 points off on BTC
    assert summary["beyond"]["0.10"] == len(DRIFTED) and summary["beyond"]["0.01"] < 6


async def test_the_drift_filters_select_the_drifted_traders_page_by_page(
    world: World, drifted: Item
) -> None:
    prices = {
        a: D(p["price"])
        for a, p in (await world.client.get(f"/strategies/{drifted['id']}/drift"))
        .json()["prices"]
        .items()
    }
    want = expected(
        [t for t in await traders_of(world, drifted["id"]) if t["status"] == "active"], prices
    )
    for query, codes in (
        ("&drift=outside", want["outside"]),
        ("&drift[gte]=0.05", {c for c, d in want["drifts"].items() if d >= D("0.05")}),
        ("&drift[gte]=0", set(want["drifts"])),
        ("&drift[gte]=1", set()),
        ("&drift=outside&auto_rebalance=true&participant_code=D2", {"D2"}),
    ):
        seen: list[str] = []
        page, total_pages = 1, 1
        while page <= total_pages:
            answer = await world.client.get(
                f"/strategies/traders?strategy_id={drifted['id']}{query}&size=2&page={page}"
            )
            assert answer.status_code == 200, (query, answer.text)
            body = answer.json()
            assert body["size"] == 2 and len(body["message"]) <= 2
            seen += [t["participant_code"] for t in body["message"]]
            total_pages = body["total_pages"]
            page += 1
        assert sorted(seen) == sorted(codes), query
        assert total_pages == max(1, -(-len(codes) // 2)), query
    # The Trader resource is unchanged by the filter (the spec's shape, no drift field).
    (one,) = await traders_of(world, drifted["id"], "&drift[gte]=0.05&participant_code=D1")
    assert "drift" not in one


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("drift[gte]=0.05", "drift[gte]"),  # no strategy_id
        ("drift=outside", "drift"),
        ("strategy_id={id}&drift[gte]=1.5", "drift[gte]"),
        ("strategy_id={id}&drift[gte]=-0.1", "drift[gte]"),
        ("strategy_id={id}&drift[gte]=5e-2", "drift[gte]"),
        ("strategy_id={id}&drift[gte]=NaN", "drift[gte]"),
        ("strategy_id={id}&drift[gte]=", "drift[gte]"),
        ("strategy_id={id}&drift[gte]=0.05%00", "drift[gte]"),
        ("strategy_id={id}&drift[gte]=" + "0." + "1" * 40, "drift[gte]"),
        ("strategy_id={id}&drift=inside", "drift"),
    ],
)
async def test_a_bad_drift_filter_is_a_400_naming_the_field(
    world: World, drifted: Item, query: str, field: str
) -> None:
    answer = await world.client.get("/strategies/traders?" + query.format(id=drifted["id"]))
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["code"] == "invalid_request", problem
    assert [e["field"] for e in problem["errors"]] == [field], problem


async def test_drift_needs_a_model_prices_and_for_outside_a_band(
    world: World, drifted: Item
) -> None:
    bare = await world.strategy()
    await world.caught_up()  # drift reads the read models alone
    for path in (
        f"/strategies/{bare}/drift",
        f"/strategies/traders?strategy_id={bare}&drift=outside",
    ):
        answer = await world.client.get(path)
        assert (answer.status_code, answer.json()["code"]) == (409, "model_required"), answer.text
    # Every USD instrument is priced by the Operations' checks; nothing ever priced in EUR.
    created = await world.client.post(
        "/strategies", {"quoted_currency": "EUR", "allocations": BLUE_CHIP}
    )
    unpriced = created.json()["id"]
    await world.caught_up()
    answer = await world.client.get(f"/strategies/{unpriced}/drift")
    assert (answer.status_code, answer.json()["code"]) == (409, "prices_unknown"), answer.text
    fields = [e["field"] for e in answer.json()["errors"]]
    assert fields == ["prices.BTC", "prices.ETH", "prices.SOL"]
    # A model and prices but no policy: the summary has no band, `outside` cannot be asked.
    plain = await world.client.post(
        "/strategies", {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    plain_id = plain.json()["id"]
    await world.caught_up()
    summary = await world.client.get(f"/strategies/{plain_id}/drift")
    assert summary.status_code == 200, summary.text
    assert summary.json()["outside_policy_band"] is None and summary.json()["traders"] == 0
    assert summary.json()["largest_drift"] == "0.000000"
    refused = await world.client.get(f"/strategies/traders?strategy_id={plain_id}&drift=outside")
    assert (refused.status_code, refused.json()["code"]) == (409, "drift_band_required")
    assert [e["field"] for e in refused.json()["errors"]] == ["drift"]


async def test_another_platforms_strategy_is_not_found_and_filters_to_nothing(
    world: World, drifted: Item
) -> None:
    other = await world.another_platform("DRIFT2")
    answer = await other.get(f"/strategies/{drifted['id']}/drift")
    assert (answer.status_code, answer.json()["code"]) == (404, "strategy_not_found")
    listed = await other.get(f"/strategies/traders?strategy_id={drifted['id']}&drift[gte]=0")
    assert listed.status_code == 200 and listed.json()["message"] == []
    unknown = await world.client.get(f"/strategies/{uuid.uuid4()}/drift")
    assert unknown.status_code == 404


# -- the SQL filter against the domain ------------------------------------------------------
SCHEMA = "drift_agree"
HALVES = Allocations((Allocation("BTC", D("0.5")), Allocation("ETH", D("0.5"))))
AT = {"BTC": D("60"), "ETH": D("40")}
EDGES: dict[str, Holdings] = {
    "sixty-forty": Holdings({"BTC": D(1), "ETH": D(1)}),  # exactly 0.1 off
    "on-target": Holdings({"BTC": D("0.5"), "ETH": D("0.75")}),
    "only-cash": Holdings({}, D("50")),
    "unpriced": Holdings({"SOL": D(1)}),
    "point-oh-five": Holdings({"BTC": D("0.75"), "ETH": D("1.375")}),  # 45/55: 0.05 off
}


def _random_traders(seed: int, count: int) -> dict[str, Holdings]:
    shuffler = random.Random(seed)
    made = {}
    for i in range(count):
        positions = {
            a: D(shuffler.randint(0, 30_000)) / D(10_000)
            for a in ("BTC", "ETH")
            if shuffler.random() < 0.9
        }
        made[f"r{i}"] = Holdings(
            {a: q for a, q in positions.items() if q}, D(shuffler.randint(0, 500)) / 100
        )
    return made


async def _store(pool: asyncpg.Pool, strategy_id: uuid.UUID, traders: dict[str, Holdings]) -> None:
    now = datetime.now(UTC)
    strategy = StrategyRow(
        strategy_id,
        PLATFORM,
        uuid.uuid4(),
        "USD",
        {},
        now,
        now,
        strategy_id,
        1,
        model={"version": 1, "allocations": HALVES.as_list()},
        policy={
            "version": 1,
            "effective_from": None,
            "drift_band": {"absolute": "0.1", "relative": "0.2"},
            "cooldown_days": 0,
            "cash_buffer": "0",
        },
    )
    prices = [
        PriceRow(
            price_id(PLATFORM, "USD", a),
            PLATFORM,
            "USD",
            a,
            p,
            now,
            "Operation.PricesLocked",
            now,
            now,
            strategy_id,
            1,
        )
        for a, p in AT.items()
    ]
    rows = [
        TraderRow(
            uuid.uuid5(strategy_id, code),
            PLATFORM,
            strategy_id,
            code,
            str(strategy_id),
            True,
            "active",
            {a: format(q, "f") for a, q in h.positions.items() if q},
            h.cash,
            now - timedelta(seconds=i),
            now,
            uuid.uuid5(strategy_id, code),
            1,
        )
        for i, (code, h) in enumerate(traders.items())
    ]
    for kind, batch in ((StrategyRow, [strategy]), (PriceRow, prices), (TraderRow, rows)):
        await pool.execute(kind.TABLE.upsert(SCHEMA), codec(kind).batch(batch))


async def _selected(pool: asyncpg.Pool, strategy_id: uuid.UUID, **drift: str) -> set[str]:
    codes: set[str] = set()
    page, total_pages = 1, 1
    while page <= total_pages:
        found = await queries.list_traders(
            pool, PLATFORM, schema=SCHEMA, strategy_id=strategy_id, page=page, size=200, **drift
        )
        codes |= {t["participant_code"] for t in found.items}
        total_pages, page = found.total_pages, page + 1
    return codes


async def test_the_sql_filter_selects_exactly_what_the_domain_computes(world: World) -> None:
    pool = world.engine.pool
    await ensure_scratch(pool, SCHEMA)
    strategy_id = uuid.uuid4()
    traders = {**EDGES, **_random_traders(18, 300)}
    await _store(pool, strategy_id, traders)
    band = DriftBand(D("0.1"), D("0.2"))
    drifts = {c: trader_drift(h, AT, Targets.of(HALVES), band) for c, h in traders.items()}
    assert drifts["unpriced"] is None
    for threshold in ("0", "0.05", "0.1", "0.100000000000000001", "0.2", "0.5", "1"):
        want = {c for c, d in drifts.items() if d is not None and d.at_least(D(threshold))}
        assert await _selected(pool, strategy_id, drift_gte=threshold) == want, threshold
    assert "sixty-forty" in await _selected(pool, strategy_id, drift_gte="0.1")
    assert "point-oh-five" in await _selected(pool, strategy_id, drift_gte="0.05")
    outside = {c for c, d in drifts.items() if d is not None and d.outside}
    assert await _selected(pool, strategy_id, drift="outside") == outside
    assert "sixty-forty" not in outside  # on the absolute edge, and 20% of ETH's target: inside
    assert "only-cash" in outside and "on-target" not in outside
    assert 0 < len(outside) < len(traders) - 3
