"""The audits on a real history: the demo story at small size on the in-process bus and real
PostgreSQL, plus a second platform with a rejected participant. One history serves the module:
read-only audits run first, the tampering tests last (in file order)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

from domain.audit import history, operation_ids
from domain.chunk import OperationChunk, chunk_id
from domain.eligibility import ParticipantStatus
from domain.operation import Operation
from domain.statuses import OperationStatus, OperationType
from domain.trader import Trader
from infra.bootstrap.engine import Engine
from infra.bus.memory import InProcessBus
from infra.cli.audit import app as audit_app
from infra.eventstore.store import PostgresTrading
from infra.logging import configure_logging
from infra.settings import Settings
from infra.tools.audit_report import replay_differences
from infra.tools.demo import run_demo
from infra.tools.demo_story import PLATFORM
from infra.venue import build_venue
from infra.venue.config import VenueConfig
from tests.fixtures.postgres import scratch_database
from tests.integration.event_feed import feed_client
from tests.integration.pipeline.harness import BLUE_CHIP, wait_terminal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from typer.testing import Result

pytestmark = pytest.mark.integration

TRADERS = 24
OTHER = "other-platform"
CATCH_UP_S = 60


class History:
    def __init__(self, url: str, trading: PostgresTrading, rejected_op: UUID) -> None:
        self.url = url
        self.trading = trading
        self.rejected_op = rejected_op
        self.operations = [o for o in self.trading.get_many(list(operation_ids(trading))).values()]

    def demo_operation(self, kind: OperationType) -> Operation:
        found: Operation = next(
            o for o in self.operations if o.platform_id == PLATFORM and o.type is kind
        )
        return found

    def settled_trader(self, operation: Operation) -> Trader:
        chunk = self.trading.get_many([chunk_id(operation.id, 0)])[chunk_id(operation.id, 0)]
        assert isinstance(chunk, OperationChunk)
        settled = [d for d in chunk.decisions.values() if d["outcome"] == "settled"]
        trader = self.trading.find(UUID(settled[0]["trader_id"]), Trader)
        assert trader is not None
        return trader


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> Iterator[str]:
    """One database for the module's history (made once: the story takes seconds)."""
    with scratch_database(postgres_url, "audit") as url:
        yield url


@pytest.fixture(scope="module")
async def story(database_url: str) -> AsyncIterator[History]:
    settings = Settings(database_url=database_url, chunk_size=10)
    async with Engine(settings, database_url, ["all"], bus=InProcessBus()) as engine:
        await run_demo(engine, TRADERS, Console(file=io.StringIO()))
        rejected_op = await _other_platform_enrollment(engine)
        await _projections_caught_up(engine)
    trading = await asyncio.to_thread(PostgresTrading, database_url)
    try:
        yield History(database_url, trading, rejected_op)
    finally:
        trading.close()


async def _other_platform_enrollment(engine: Engine) -> UUID:
    """Two participants enrolled on another platform; a suspended third is rejected."""
    trading = engine.trading
    await engine.call(trading.register_participants, OTHER, ["O1", "O2"])
    await engine.call(trading.register_participants, OTHER, ["O3"], ParticipantStatus.SUSPENDED)
    await engine.call(trading.deposit_float, OTHER, "USD", Decimal("10000.00"), "IT")
    strategy, _ = await engine.call(
        trading.create_strategy, OTHER, uuid4(), {"quoted_currency": "USD"}
    )
    body = {
        "allocations": BLUE_CHIP,
        "participants": [{"participant_code": c, "amount": "300.00"} for c in ("O1", "O2", "O3")],
    }
    operation, _ = await engine.call(
        trading.request_operation, OTHER, strategy.id, uuid4(), OperationType.ENROLLMENT, body
    )
    done = await wait_terminal(trading, operation.id)
    assert done.status is OperationStatus.SETTLED
    return done.id


async def _projections_caught_up(engine: Engine) -> None:
    deadline = time.monotonic() + CATCH_UP_S
    while await replay_differences(engine.pool, engine.trading, scratch="catch_up"):
        assert time.monotonic() < deadline, "the read models did not catch up"
        await asyncio.sleep(0.2)


async def audit(url: str, *args: str) -> Result:
    """`strategies audit ...` in-process, set up as the root callback does: settings as the
    context object, logs on stderr (stdout carries the report)."""
    settings = Settings(database_url=url)
    configure_logging(settings)
    runner = CliRunner()
    return await asyncio.to_thread(
        lambda: runner.invoke(audit_app, list(args), obj=settings, catch_exceptions=False)
    )


# -- read-only audits -------------------------------------------------------------------------
async def test_a_real_history_replays_and_verifies_clean(story: History) -> None:
    replayed = await audit(story.url, "replay", "--schema", "audit_scratch")
    assert replayed.exit_code == 0, replayed.output
    assert "match the replay" in replayed.output

    verified = await audit(story.url, "verify")
    assert verified.exit_code == 0, verified.output
    # The demo's eight (its policy-driven rebalance and its cancelled top-up among them) and
    # the other platform's.
    assert "9 operation(s) verified: no violation" in verified.output
    assert any(o.parameters.get("origin") == "policy" for o in story.operations)
    cancelled = [o for o in story.operations if o.cancelled]
    for operation in cancelled:
        one = await audit(story.url, "verify", "--operation", str(operation.id))
        assert one.exit_code == 0, one.output
        report = await audit(story.url, "operation", str(operation.id), "--format", "json")
        assert report.exit_code == 0 and '"cancelled"' in report.output, report.output

    one = await audit(story.url, "verify", "--operation", str(story.rejected_op))
    assert one.exit_code == 0, one.output


async def test_replay_refuses_to_rebuild_the_live_schema(story: History) -> None:
    refused = await audit(story.url, "replay", "--schema", "public")
    assert refused.exit_code == 2


async def test_the_fairness_report_lists_prices_blocks_and_every_trader(story: History) -> None:
    done = await audit(story.url, "operation", str(story.rejected_op), "--format", "json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    prices = {p["asset"]: p for p in report["locked_prices"]}
    assert set(prices) == {"BTC", "ETH", "SOL"}
    assert all(p["quote_id"] and p["quoted_at"] for p in prices.values())
    assert {b["asset"] for b in report["block_orders"]} == set(prices)
    assert {f["asset"] for f in report["fills"]} == set(prices)
    assert report["residual"] == [] and report["crossed"] == []  # blocks are the Traders' net
    assert set(report["float_budgets"]) == {"0"}  # the float it found, reserved in order
    by_code = {t["participant_code"]: t for t in report["traders"]}
    assert by_code["O3"]["outcome"] == "rejected"
    assert by_code["O3"]["reasons"] == ["participant_ineligible"]
    assert by_code["O3"]["instructions"] == []
    for code in ("O1", "O2"):
        entry = by_code[code]
        assert entry["outcome"] == "settled"
        assert {i["price"] for i in entry["instructions"] if i["asset"] == "BTC"} == {
            prices["BTC"]["price"]
        }
        bought = {i["asset"]: i["quantity"] for i in entry["instructions"]}
        assert entry["positions"] == bought

    as_csv = await audit(story.url, "operation", str(story.rejected_op), "--format", "csv")
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    kinds = {r["record"] for r in rows}
    assert kinds >= {"locked_price", "block_order", "fill", "instruction", "trader"}
    assert kinds <= {
        "locked_price",
        "block_order",
        "fill",
        "residual",
        "crossed",
        "instruction",
        "trader",
    }
    o3 = next(r for r in rows if r["participant_code"] == "O3")
    assert (o3["record"], o3["reasons"]) == ("trader", "participant_ineligible")
    assert len([r for r in rows if r["record"] == "instruction"]) == 6


async def test_a_trader_as_of_before_and_after_its_settlement(story: History) -> None:
    trader = story.settled_trader(story.demo_operation(OperationType.ENROLLMENT))
    settled = next(e for e in history(story.trading, trader.id) if type(e).__name__ == "Settled")
    before = settled.timestamp - timedelta(microseconds=1)

    early = await audit(story.url, "trader", str(trader.id), "--at", before.isoformat())
    assert early.exit_code == 0, early.output
    state = json.loads(early.stdout)
    assert (state["status"], state["positions"], state["cash"]) == ("pending", {}, "0")
    assert state["held_by"] == str(settled.operation_id)

    late = await audit(story.url, "trader", str(trader.id), "--at", settled.timestamp.isoformat())
    state = json.loads(late.stdout)
    assert state["status"] == "active" and state["held_by"] is None
    assert set(state["positions"]) == {"BTC", "ETH", "SOL"}

    naive = await audit(story.url, "trader", str(trader.id), "--at", "2026-01-01T00:00:00")
    assert naive.exit_code == 2
    too_early = await audit(story.url, "trader", str(trader.id), "--at", "2000-01-01T00:00:00Z")
    assert too_early.exit_code == 2


# -- the events feed --------------------------------------------------------------------------
@pytest.fixture
async def feed(story: History) -> AsyncIterator[httpx.AsyncClient]:
    async with feed_client(story.trading) as client:
        yield client


async def read_all(client: httpx.AsyncClient, platform: str, limit: int) -> list[dict[str, Any]]:
    found, cursor = [], ""
    while True:
        response = await client.get(
            "/strategies/events",
            params={"after": cursor, "limit": limit},
            headers={"x-test-platform": platform},
        )
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["events"]) <= limit
        found += page["events"]
        if page["next"] == cursor:
            return found
        cursor = page["next"]


async def test_the_events_feed_pages_by_cursor_and_keeps_platforms_apart(
    story: History, feed: httpx.AsyncClient
) -> None:
    small = await read_all(feed, OTHER, limit=7)
    large = await read_all(feed, OTHER, limit=1000)
    assert small == large
    cursors = [e["cursor"] for e in small]
    assert len(set(cursors)) == len(cursors) and not any("position" in e for e in small)
    assert {e["aggregate_type"] for e in small} == {
        "Strategy",
        "Operation",
        "OperationChunk",
        "Trader",
    }
    other_ids = {o.id for o in story.operations if o.platform_id == OTHER}
    assert {UUID(e["aggregate_id"]) for e in small if e["aggregate_type"] == "Operation"} == (
        other_ids
    )
    demo = await read_all(feed, PLATFORM, limit=1000)
    assert demo and not {e["cursor"] for e in demo} & set(cursors)
    for event in demo:
        if "platform_id" in event["data"]:
            assert event["data"]["platform_id"] == PLATFORM
    assert await read_all(feed, "nobody", limit=50) == []


@pytest.mark.parametrize(
    "params", [{"after": "x"}, {"after": "-1"}, {"limit": "0"}, {"limit": "1001"}]
)
async def test_a_bad_cursor_or_limit_is_a_400_problem(
    feed: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await feed.get(
        "/strategies/events", params=params, headers={"x-test-platform": OTHER}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_failed_operation_verifies_clean(fresh_database_url: str) -> None:
    """The venue refuses one block after another was filled: the house keeps that fill, no
    Trader trades, every hold is released, and verify finds nothing wrong."""
    settings = Settings(database_url=fresh_database_url, chunk_size=2)
    async with Engine(settings, fresh_database_url, ["all"], bus=InProcessBus()) as engine:
        trading = engine.trading
        codes = ["F1", "F2", "F3"]
        await engine.call(trading.register_participants, OTHER, codes)
        await engine.call(trading.deposit_float, OTHER, "USD", Decimal("10000.00"), "IT")
        strategy, _ = await engine.call(
            trading.create_strategy, OTHER, uuid4(), {"quoted_currency": "USD"}
        )
        body = {
            "allocations": BLUE_CHIP,
            "participants": [{"participant_code": c, "amount": "300.00"} for c in codes],
        }
        enrolled, _ = await engine.call(
            trading.request_operation, OTHER, strategy.id, uuid4(), OperationType.ENROLLMENT, body
        )
        await wait_terminal(trading, enrolled.id)
        engine.stages.venue = build_venue(VenueConfig(reject_orders=frozenset({"ETH"})))
        top_up, _ = await engine.call(
            trading.request_operation, OTHER, strategy.id, uuid4(), OperationType.TOP_UP, body
        )
        assert (await wait_terminal(trading, top_up.id)).status is OperationStatus.FAILED
    verified = await audit(fresh_database_url, "verify")
    assert verified.exit_code == 0, verified.output
    assert "2 operation(s) verified" in verified.stdout


# -- tampering (runs last: it changes the history) --------------------------------------------
async def test_a_tampered_read_model_row_is_reported_by_replay(story: History) -> None:
    trader = story.settled_trader(story.demo_operation(OperationType.ENROLLMENT))
    connection = await asyncpg.connect(story.url)
    try:
        await connection.execute("UPDATE traders SET cash = cash + 1 WHERE id = $1", trader.id)
        replayed = await audit(story.url, "replay")
        await connection.execute("UPDATE traders SET cash = cash - 1 WHERE id = $1", trader.id)
    finally:
        await connection.close()
    assert replayed.exit_code == 1
    assert f"traders {trader.id} cash" in replayed.output


async def test_a_forged_settlement_is_reported_by_verify(story: History) -> None:
    operation = story.demo_operation(OperationType.TOP_UP)
    trader = story.settled_trader(operation)
    forged = {
        "side": "buy",
        "underlying_currency": "BTC",
        "quantity": "0.001",
        "notional": "1.00",
        "price": "1000",
    }
    trader._settled(  # what a tampered store would hold: a Settled no stage ever wrote
        operation_id=operation.id,
        execution_id=None,
        operation_type=operation.type.value,
        instructions=[forged],
        funded=Decimal("1.00"),
        paid_out=Decimal("0"),
        status="active",
        auto_rebalance=trader.auto_rebalance,
    )
    await asyncio.to_thread(story.trading.save, trader)

    verified = await audit(story.url, "verify", "--operation", str(operation.id))
    assert verified.exit_code == 1
    lines = verified.output.splitlines()
    rules = {line.split(":")[0] for line in lines if str(operation.id) in line}
    assert {"value_conserved", "totals_match", "uniform_price", "execution_closed"} <= rules
    assert any(str(trader.id) in line and line.startswith("uniform_price") for line in lines)
    everything = await audit(story.url, "verify")
    assert everything.exit_code == 1
