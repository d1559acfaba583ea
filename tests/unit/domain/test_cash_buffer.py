"""The cash buffer from a Strategy's policy to every stage of an Operation.

`plan_operation` records it on the Operations that buy (`parameters["cash_buffer"]`); the
stages read it back once (`operation_terms`) and hand it to the check, pricing's passes and
settlement, which must all compute the same legs from it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from domain import ids
from domain.allocations import Allocations
from domain.audit import verify
from domain.calculators import Market, current_weights
from domain.catalogue import DEFAULT_INSTRUMENTS, InstrumentCatalogue
from domain.chunk import OperationChunk, chunk_id
from domain.credit import CreditCheck, OperationTerms, Outcome, TraderSnapshot
from domain.eligibility import ParticipantProfile
from domain.legs import Holdings
from domain.money import ZERO
from domain.requesting import plan_operation
from domain.requests import Limits, ParticipantOrder
from domain.services import Trading
from domain.stages import operation_prices, operation_terms
from domain.statuses import OperationStatus, OperationType, Reason, TraderStatus
from domain.strategy import Strategy
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    PRICES,
    funded,
    new_app,
    new_strategy,
    run,
    set_buffer,
    with_buffer,
)

CATALOGUE = InstrumentCatalogue.of(DEFAULT_INSTRUMENTS)
CODES = ["ALICE", "BOB", "CAROL", "DAVE"]
BUFFER = Decimal("0.05")
MOVED = {"BTC": Decimal("66000.00"), "ETH": Decimal("2700.00"), "SOL": Decimal("150.00")}


def body_for(kind: OperationType) -> dict[str, Any]:
    body: dict[str, Any] = {"allocations": BLUE_CHIP}
    if kind is OperationType.LIQUIDATION:
        return {"participants": [{"participant_code": "ALICE"}]}
    if kind.buys_from_float or kind is OperationType.PARTIAL_SELL:
        body["participants"] = funded(["ALICE"], "100.00")
    else:
        body["participants"] = [{"participant_code": "ALICE"}]
    return body


def planned(kind: OperationType, buffer: Decimal) -> dict[str, str]:
    return plan_operation(
        kind,
        body_for(kind),
        quoted_currency="USD",
        catalogue=CATALOGUE,
        limits=Limits(),
        scope=None,
        cash_buffer=buffer,
    ).parameters


# -- the parameter --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", [OperationType.ENROLLMENT, OperationType.TOP_UP, OperationType.REBALANCE]
)
def test_an_operation_that_buys_records_the_cash_buffer(kind: OperationType) -> None:
    assert planned(kind, Decimal("0.0025"))["cash_buffer"] == "0.0025"


@pytest.mark.parametrize("kind", [OperationType.PARTIAL_SELL, OperationType.LIQUIDATION])
def test_an_operation_that_only_sells_records_no_cash_buffer(kind: OperationType) -> None:
    assert "cash_buffer" not in planned(kind, BUFFER)


@pytest.mark.parametrize("kind", list(OperationType))
def test_a_zero_cash_buffer_is_not_recorded(kind: OperationType) -> None:
    assert "cash_buffer" not in planned(kind, ZERO)
    assert "cash_buffer" not in planned(kind, Decimal("0.00"))


def test_the_terms_read_the_recorded_buffer_and_none_without_it() -> None:
    app = new_app()
    app.register_participants(PLATFORM, CODES)
    buffered = run(
        app,
        with_buffer(app, BUFFER),
        OperationType.ENROLLMENT,
        {"allocations": BLUE_CHIP, "participants": funded(CODES)},
    )
    plain = run(
        app,
        new_strategy(app),
        OperationType.ENROLLMENT,
        {"allocations": BLUE_CHIP, "participants": funded(CODES)},
    )
    assert buffered.parameters == {"cash_buffer": "0.05"}
    assert operation_terms(buffered).cash_buffer == BUFFER
    assert plain.parameters == {}
    assert operation_terms(plain).cash_buffer == ZERO


# -- drift against the buffered targets -------------------------------------------------


def at_buffered_target(buffer: Decimal) -> Holdings:
    """10,000 of value: BTC 50%, ETH 30%, SOL 20% of (1 - buffer), the rest in cash."""
    invested = Decimal(10_000) * (1 - buffer)
    return Holdings(
        {
            "BTC": invested * Decimal("0.5") / PRICES["BTC"],
            "ETH": invested * Decimal("0.3") / PRICES["ETH"],
            "SOL": invested * Decimal("0.2") / PRICES["SOL"],
        },
        Decimal(10_000) * buffer,
    )


def check_rebalance(holdings: Holdings, buffer: Decimal) -> Outcome:
    terms = OperationTerms(
        uuid4(), OperationType.REBALANCE, Allocations.from_list(BLUE_CHIP), Decimal("0.01"), buffer
    )
    check = CreditCheck(terms, Market("USD", 2, CATALOGUE, PRICES))
    trader = TraderSnapshot(TraderStatus.ACTIVE, None, holdings)
    profile = ParticipantProfile("ALICE")
    return check.check(ParticipantOrder("ALICE"), trader, profile).outcome


def test_a_trader_at_its_buffered_targets_is_within_tolerance_only_with_the_buffer() -> None:
    holdings = at_buffered_target(BUFFER)
    assert check_rebalance(holdings, BUFFER) is Outcome.SKIPPED
    assert check_rebalance(holdings, ZERO) is Outcome.APPROVED  # 2.5 points under on BTC


def test_a_trader_without_its_buffer_in_cash_has_drifted() -> None:
    """At the unbuffered targets every asset is only w x b over (1 point on SOL), but its
    cash is 5 points short of the buffer: cash is a line of its own when there is one."""
    holdings = at_buffered_target(ZERO)
    assert current_weights(holdings, Market("USD", 2, CATALOGUE, PRICES))["SOL"] == Decimal("0.2")
    assert check_rebalance(holdings, Decimal("0.02")) is Outcome.APPROVED
    assert check_rebalance(holdings, ZERO) is Outcome.SKIPPED


# -- whole Operations -----------------------------------------------------------------


def traders(app: Trading, strategy: Strategy) -> dict[str, Holdings]:
    return {c: app.repository.get(ids.trader_id(strategy.id, c)).holdings for c in CODES}


def test_an_enrollment_with_a_buffer_leaves_it_in_every_traders_cash() -> None:
    app = new_app(chunk_size=3)
    app.register_participants(PLATFORM, CODES)
    strategy = with_buffer(app, BUFFER)
    body = {"allocations": BLUE_CHIP, "participants": funded(CODES, "1000.00")}
    operation = run(app, strategy, OperationType.ENROLLMENT, body, PRICES, MOVED)
    assert operation.status is OperationStatus.SETTLED
    assert operation.residual == {}
    for holdings in traders(app, strategy).values():
        invested = Decimal("1000.00") - holdings.cash
        assert holdings.cash >= Decimal("50.00")  # 1000 x 0.05 left aside
        assert invested <= Decimal("950.00")
        assert invested > Decimal("949.00")  # and not much more kept (4 legs of rounding)
    assert verify(app, operation.id) == (1, [])


def test_a_top_up_with_a_buffer_leaves_it_in_cash_too() -> None:
    app = new_app(chunk_size=3)
    app.register_participants(PLATFORM, CODES)
    strategy = with_buffer(app, BUFFER)
    enrolled = {"allocations": BLUE_CHIP, "participants": funded(CODES, "1000.00")}
    run(app, strategy, OperationType.ENROLLMENT, enrolled)
    before = traders(app, strategy)
    topped = {"allocations": BLUE_CHIP, "participants": funded(CODES, "200.00")}
    operation = run(app, strategy, OperationType.TOP_UP, topped)
    assert operation.parameters == {"cash_buffer": "0.05"}
    for code, holdings in traders(app, strategy).items():
        assert holdings.cash - before[code].cash >= Decimal("10.00")
    assert verify(app, operation.id) == (1, [])


def test_a_rebalance_with_a_buffer_raises_it_and_then_leaves_the_traders_alone() -> None:
    """Enrolled without a buffer (all invested), then rebalanced to the same weights under a
    5% buffer at other prices: each Trader sells to hold 5% of its value in cash. Asked again
    with a tolerance, every Trader is at its buffered targets and is skipped."""
    app = new_app(chunk_size=3)
    app.register_participants(PLATFORM, CODES)
    strategy = new_strategy(app)
    enrolled = {"allocations": BLUE_CHIP, "participants": funded(CODES, "1000.00")}
    run(app, strategy, OperationType.ENROLLMENT, enrolled)
    strategy = set_buffer(app, strategy.id, BUFFER)  # the policy set after the enrollment
    before = traders(app, strategy)
    everyone = {"allocations": BLUE_CHIP}
    operation = run(app, strategy, OperationType.REBALANCE, everyone, MOVED, MOVED)
    assert operation.status is OperationStatus.SETTLED
    assert operation.parameters == {"cash_buffer": "0.05"}
    assert operation.residual == {}
    locked = operation_prices(operation)
    for code, holdings in traders(app, strategy).items():
        value = before[code].value(locked)
        # It sold BTC and SOL and bought ETH: a rebalance that buys keeps V x b exactly.
        assert holdings.cash >= value * BUFFER, code
        assert holdings.cash < value * BUFFER + Decimal("1.00"), code
    assert verify(app, operation.id) == (1, [])
    again = {"allocations": BLUE_CHIP, "drift_tolerance": "0.001"}
    skipped = run(app, strategy, OperationType.REBALANCE, again, MOVED, MOVED)
    assert skipped.status is OperationStatus.SKIPPED
    assert skipped.counts["skipped"] == len(CODES)
    reasons = set()
    for index in range(skipped.chunk_count):
        chunk = app.find(chunk_id(skipped.id, index), OperationChunk)
        assert chunk is not None
        reasons |= {decision["reasons"] for decision in chunk.decisions.values()}
    assert reasons == {Reason.WITHIN_TOLERANCE.value}


def test_a_zero_buffer_policy_trades_exactly_as_no_policy() -> None:
    outcomes = []
    for policy in (None, ZERO):
        app = new_app(chunk_size=3)
        app.register_participants(PLATFORM, CODES)
        strategy = new_strategy(app) if policy is None else with_buffer(app, policy)
        enrolled = {"allocations": BLUE_CHIP, "participants": funded(CODES, "1000.00")}
        first = run(app, strategy, OperationType.ENROLLMENT, enrolled, PRICES, MOVED)
        moved = run(app, strategy, OperationType.REBALANCE, {"allocations": BLUE_CHIP}, MOVED)
        outcomes.append((first.parameters, moved.parameters, moved.totals, traders(app, strategy)))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == {} == outcomes[0][1]
