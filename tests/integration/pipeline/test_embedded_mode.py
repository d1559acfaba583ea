"""Embedded mode: the same handlers on the in-process bus, on real PostgreSQL, including the
failure paths (no quote, a refused block order) that must leave every Trader as it was."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from domain.statuses import OperationReason, OperationStatus, OperationType
from infra.bootstrap.engine import Engine
from infra.bus.memory import InProcessBus
from infra.settings import Settings
from infra.venue import build_venue
from infra.venue.config import VenueConfig
from tests.integration.pipeline.harness import BLUE_CHIP, PLATFORM, holdings, wait_terminal

pytestmark = pytest.mark.integration

CODES = [f"E{i:03d}" for i in range(60)]


@pytest.mark.parametrize(
    ("venue", "reason"),
    [
        (VenueConfig(fail_quotes=frozenset({"SOL"})), OperationReason.PRICING_FAILED),
        (VenueConfig(reject_orders=frozenset({"ETH"})), OperationReason.EXECUTION_FAILED),
    ],
)
async def test_a_failing_venue_fails_the_operation_and_changes_no_trader(
    fresh_database_url: str, venue: VenueConfig, reason: OperationReason
) -> None:
    settings = Settings(database_url=fresh_database_url, chunk_size=25)
    async with Engine(settings, fresh_database_url, ["all"], bus=InProcessBus()) as engine:
        trading = engine.trading
        await engine.call(trading.register_participants, PLATFORM, CODES)
        await engine.call(trading.deposit_float, PLATFORM, "USD", Decimal("50000.00"), "IT")
        strategy, _ = await engine.call(
            trading.create_strategy, PLATFORM, uuid4(), {"quoted_currency": "USD"}
        )
        body = {
            "allocations": BLUE_CHIP,
            "participants": [{"participant_code": c, "amount": "200.00"} for c in CODES],
        }
        enrolled, _ = await engine.call(
            trading.request_operation,
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.ENROLLMENT,
            body,
        )
        assert (await wait_terminal(trading, enrolled.id)).status is OperationStatus.SETTLED
        before = {
            c: (t.holdings, t.version) for c, t in holdings(trading, strategy.id, CODES).items()
        }
        balance = trading._float(PLATFORM, "USD").balance

        failing = build_venue(venue)  # from now on the venue fails
        engine.stages.quotes = engine.stages.venue = failing
        top_up, _ = await engine.call(
            trading.request_operation, PLATFORM, strategy.id, uuid4(), OperationType.TOP_UP, body
        )
        failed = await wait_terminal(trading, top_up.id)
        assert (failed.status, failed.status_reason) == (OperationStatus.FAILED, reason)
        assert failed.counts["rejected"] == len(CODES)
        after = holdings(trading, strategy.id, CODES)
        for code in CODES:
            assert after[code].holdings == before[code][0]
            assert after[code].held_by is None
        account = trading._float(PLATFORM, "USD")
        assert (account.balance, account.holds) == (balance, {})
