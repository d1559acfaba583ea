"""Each Operation type through the real pipeline: commands on Kafka, stages as Kafka consumers,
events in PostgreSQL; final positions, float, statuses and reasons checked against the maths."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from uuid import UUID

import pytest

from domain.allocations import Allocations
from domain.calculators import Market, buy_legs, partial_sell_plan, rebalance_legs
from domain.catalogue import fiat_precision
from domain.chunk import OperationChunk, chunk_id
from domain.legs import Holdings
from domain.money import ZERO
from domain.statuses import OperationReason, OperationStatus, TraderStatus
from infra.bootstrap.engine import Engine
from tests.integration.pipeline.harness import (
    BLUE_CHIP,
    PLATFORM,
    CommandClient,
    holdings,
    locked_prices,
    pipeline_settings,
    wait_terminal,
)

pytestmark = pytest.mark.integration

CODES = [f"P{i:03d}" for i in range(120)]
FLOAT = Decimal("1000000.00")


@pytest.fixture
async def engine(fresh_database_url: str, kafka_bootstrap: str) -> AsyncIterator[Engine]:
    settings = pipeline_settings(fresh_database_url, kafka_bootstrap)
    async with Engine(settings, fresh_database_url, ["all"]) as running:
        await running.call(running.trading.register_participants, PLATFORM, CODES)
        await running.call(running.trading.deposit_float, PLATFORM, "USD", FLOAT, "IT-FLOAT")
        yield running


def market(engine: Engine, prices: dict[str, Decimal]) -> Market:
    return Market("USD", fiat_precision("USD"), engine.trading.catalogue(), prices)


def reasons(engine: Engine, operation_id: UUID, chunks: int) -> dict[str, str]:
    found = engine.trading.get_many([chunk_id(operation_id, i) for i in range(chunks)])
    return {
        code: d["reasons"]
        for chunk in found.values()
        if isinstance(chunk, OperationChunk)
        for code, d in chunk.decisions.items()
        if d["outcome"] != "settled"
    }


async def test_the_five_operation_types_settle_as_the_maths_says(engine: Engine) -> None:
    trading = engine.trading
    async with CommandClient(
        engine.settings.kafka.bootstrap_servers or "", engine.topics
    ) as client:
        created = await client.send("create_strategy", {"quoted_currency": "USD"})
        assert created.outcome == "accepted" and created.resource is not None
        strategy = UUID(created.resource["id"])

        # enroll: everyone, plus two participants the platform never registered
        amounts = {c: Decimal(100 + i * 5) for i, c in enumerate(CODES)}
        participants = [
            {"participant_code": c, "amount": f"{a:.2f}", "auto_rebalance": i % 4 != 0}
            for i, (c, a) in enumerate(amounts.items())
        ]
        participants += [{"participant_code": u, "amount": "100.00"} for u in ("GHOST1", "GHOST2")]
        result = await client.send(
            "enroll", {"allocations": BLUE_CHIP, "participants": participants}, strategy_id=strategy
        )
        assert result.outcome == "accepted" and result.resource is not None
        assert result.resource["status"] == "validating"
        enrollment = await wait_terminal(trading, UUID(result.resource["id"]))
        assert (enrollment.status, enrollment.status_reason) == (
            OperationStatus.SETTLED,
            OperationReason.PARTIAL_SUCCESS,
        )
        assert reasons(engine, enrollment.id, enrollment.chunk_count) == {
            "GHOST1": "participant_ineligible",
            "GHOST2": "participant_ineligible",
        }
        prices = market(engine, locked_prices(enrollment))
        traders = holdings(trading, strategy, CODES)
        allocations = Allocations.from_list(BLUE_CHIP)
        for code, amount in amounts.items():
            legs = buy_legs(amount, allocations, prices)
            expected = Holdings().after(legs, cash_in=amount, cash_out=ZERO)
            assert traders[code].holdings == expected, code
            assert traders[code].status is TraderStatus.ACTIVE
        float_account = trading._float(PLATFORM, "USD")
        assert float_account.balance == FLOAT - sum(amounts.values())
        assert float_account.holds == {}

        # top-up a few, again through the topic
        before = holdings(trading, strategy, CODES[:10])
        result = await client.send(
            "top_up",
            {
                "allocations": BLUE_CHIP,
                "participants": [{"participant_code": c, "amount": "50.00"} for c in CODES[:10]],
            },
            strategy_id=strategy,
        )
        top_up = await wait_terminal(trading, UUID(result.resource["id"]))  # type: ignore[index]
        prices = market(engine, locked_prices(top_up))
        after = holdings(trading, strategy, CODES[:10])
        for code in CODES[:10]:
            legs = buy_legs(Decimal("50.00"), allocations, prices)
            assert after[code].holdings == before[code].holdings.after(legs, Decimal("50.00"), ZERO)

        # partial sell: 20.00 back from each of five
        sellers = CODES[10:15]
        before = holdings(trading, strategy, sellers)
        result = await client.send(
            "partial_sell",
            {
                "allocations": BLUE_CHIP,
                "participants": [{"participant_code": c, "amount": "20.00"} for c in sellers],
            },
            strategy_id=strategy,
        )
        sale = await wait_terminal(trading, UUID(result.resource["id"]))  # type: ignore[index]
        assert sale.status is OperationStatus.SETTLED
        prices = market(engine, locked_prices(sale))
        after = holdings(trading, strategy, sellers)
        for code in sellers:
            plan = partial_sell_plan(Decimal("20.00"), allocations, before[code].holdings, prices)
            assert plan.legs and sum((leg.notional for leg in plan.legs), ZERO) >= Decimal("20.00")
            paid = before[code].holdings.after(plan.legs, ZERO, Decimal("20.00"))  # exactly 20.00
            assert after[code].holdings == paid

        # rebalance with no participants: every active auto-rebalance Trader (from the roster)
        new_weights = [
            {"underlying_currency": "ETH", "weight": "0.60"},
            {"underlying_currency": "SOL", "weight": "0.40"},
        ]
        auto = [c for i, c in enumerate(CODES) if i % 4 != 0]
        before = holdings(trading, strategy, CODES)
        result = await client.send("rebalance", {"allocations": new_weights}, strategy_id=strategy)
        rebalance = await wait_terminal(trading, UUID(result.resource["id"]))  # type: ignore[index]
        assert rebalance.participant_count == len(auto)
        prices = market(engine, locked_prices(rebalance))
        after = holdings(trading, strategy, CODES)
        target = Allocations.from_list(new_weights)
        for code in CODES:
            if code in auto:
                legs = rebalance_legs(target, before[code].holdings, prices)
                assert after[code].holdings == before[code].holdings.after(legs, ZERO, ZERO)
                assert "BTC" not in after[code].positions
            else:
                assert after[code].version == before[code].version  # not in scope: untouched

        # liquidate two: nothing held, everything paid into the float
        leaving = CODES[1:3]
        balance = trading._float(PLATFORM, "USD").balance
        before = holdings(trading, strategy, leaving)
        result = await client.send(
            "liquidate",
            {"participants": [{"participant_code": c} for c in leaving]},
            strategy_id=strategy,
        )
        liquidation = await wait_terminal(trading, UUID(result.resource["id"]))  # type: ignore[index]
        prices = market(engine, locked_prices(liquidation))
        after = holdings(trading, strategy, leaving)
        paid = ZERO
        for code in leaving:
            assert (after[code].status, after[code].positions, after[code].cash) == (
                TraderStatus.LIQUIDATED,
                {},
                ZERO,
            )
            paid += before[code].cash + sum(
                (prices.sell(a, q).notional for a, q in before[code].positions.items()), ZERO
            )
        assert trading._float(PLATFORM, "USD").balance == balance + paid


async def test_a_replayed_command_returns_the_original_and_bad_ones_are_refused_or_dead_lettered(
    engine: Engine,
) -> None:
    async with CommandClient(
        engine.settings.kafka.bootstrap_servers or "", engine.topics
    ) as client:
        await client.send_raw(
            b"{not json", "3f1c0c2e-0000-4000-8000-000000000001", {"platform": PLATFORM}
        )
        await client.send_raw(b'{"command": "enroll"}', "not-a-uuid", {"platform": PLATFORM})
        await client.send_raw(
            b'{"command": "create_strategy"}', "3f1c0c2e-0000-4000-8000-000000000002", {}
        )
        refused = await client.send("create_strategy", {"quoted_currency": "XYZ"})
        assert refused.outcome == "rejected" and refused.error is not None
        assert refused.error.code == "unsupported_currency"

        import json

        request_id = "3f1c0c2e-0000-4000-8000-000000000003"
        body = json.dumps(
            {"command": "create_strategy", "body": {"quoted_currency": "USD"}}
        ).encode()
        await client.send_raw(body, request_id, {"platform": PLATFORM})
        first = await client.result(request_id)
        client.results.clear()
        await client.send_raw(body, request_id, {"platform": PLATFORM})
        again = await client.result(request_id)
        assert (first.outcome, again.outcome) == ("accepted", "replayed")
        assert first.resource == again.resource
        for _ in range(100):
            if len(client.dead_letters) >= 3:
                break
            import asyncio

            await asyncio.sleep(0.1)
        assert sorted(d["reason"] for d in client.dead_letters) == [
            "invalid_json",
            "invalid_request_id",
            "missing_platform",
        ]
