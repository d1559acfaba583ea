from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

from domain.allocations import Allocation, Allocations
from domain.calculators import Market
from domain.catalogue import DEFAULT_INSTRUMENTS, Instrument, InstrumentCatalogue, InstrumentStatus
from domain.credit import CreditCheck, OperationTerms, Outcome, TraderSnapshot
from domain.eligibility import ParticipantProfile, ParticipantStatus
from domain.legs import Holdings
from domain.requests import ParticipantOrder
from domain.statuses import OperationType, Reason, TraderStatus

D = Decimal
OP = uuid4()
OTHER_OP = uuid4()
CATALOGUE = InstrumentCatalogue.of(
    [*DEFAULT_INSTRUMENTS, Instrument("XRP", "USD", 6, D(1), InstrumentStatus.HALTED)]
)
PRICES = {"BTC": D("60000"), "ETH": D("3000"), "SOL": D("150"), "XRP": D("0.5")}
MARKET = Market("USD", 2, CATALOGUE, PRICES)
BLUE_CHIP = Allocations(
    (Allocation("BTC", D("0.5")), Allocation("ETH", D("0.3")), Allocation("SOL", D("0.2")))
)
ACTIVE = ParticipantProfile("P")
HOLDING = Holdings({"BTC": D("0.01"), "ETH": D("0.1")}, D("0"))


def active(holdings: Holdings = HOLDING, held_by: object = None) -> TraderSnapshot:
    return TraderSnapshot(TraderStatus.ACTIVE, held_by, holdings)  # type: ignore[arg-type]


def check(
    kind: OperationType,
    trader: TraderSnapshot | None,
    profile: ParticipantProfile | None = ACTIVE,
    amount: str | None = "100.00",
    allocations: Allocations | None = BLUE_CHIP,
    tolerance: Decimal | None = None,
) -> tuple[Outcome, tuple[Reason, ...]]:
    terms = OperationTerms(OP, kind, allocations, tolerance)
    credit = CreditCheck(terms, MARKET)
    order = ParticipantOrder("P", D(amount) if amount else None)
    decision = credit.check(order, trader, profile)
    return decision.outcome, decision.reasons


def test_a_new_eligible_participant_may_enroll() -> None:
    assert check(OperationType.ENROLLMENT, None) == (Outcome.APPROVED, ())


def test_an_active_trader_enrolling_again_is_told_to_top_up() -> None:
    assert check(OperationType.ENROLLMENT, active()) == (
        Outcome.REJECTED,
        (Reason.TRADER_ALREADY_EXISTS,),
    )


def test_a_liquidated_trader_may_enroll_again() -> None:
    liquidated = TraderSnapshot(TraderStatus.LIQUIDATED, None, Holdings())
    assert check(OperationType.ENROLLMENT, liquidated)[0] is Outcome.APPROVED


def test_top_up_needs_an_existing_active_trader() -> None:
    assert check(OperationType.TOP_UP, None)[1] == (Reason.TRADER_NOT_FOUND,)
    pending = TraderSnapshot(TraderStatus.PENDING, None, Holdings())
    assert check(OperationType.TOP_UP, pending)[1] == (Reason.TRADER_NOT_FOUND,)
    liquidated = TraderSnapshot(TraderStatus.LIQUIDATED, None, Holdings())
    assert check(OperationType.TOP_UP, liquidated)[1] == (Reason.TRADER_NOT_ACTIVE,)
    assert check(OperationType.TOP_UP, active())[0] is Outcome.APPROVED


def test_every_reason_that_applies_is_reported_first_one_first() -> None:
    outcome, reasons = check(OperationType.ENROLLMENT, active(held_by=OTHER_OP), profile=None)
    assert outcome is Outcome.REJECTED
    assert reasons == (
        Reason.TRADER_ALREADY_EXISTS,
        Reason.CONCURRENT_HOLD,
        Reason.PARTICIPANT_INELIGIBLE,
    )


def test_a_trader_held_by_its_own_operation_is_not_a_concurrent_hold() -> None:
    assert check(OperationType.TOP_UP, active(held_by=OP))[0] is Outcome.APPROVED


def test_suspended_participants_and_restricted_assets_are_excluded() -> None:
    suspended = ParticipantProfile("P", ParticipantStatus.SUSPENDED)
    assert check(OperationType.ENROLLMENT, None, suspended)[1] == (Reason.PARTICIPANT_INELIGIBLE,)
    no_sol = ParticipantProfile("P", restricted_assets=frozenset({"SOL"}))
    assert check(OperationType.ENROLLMENT, None, no_sol)[1] == (Reason.INSTRUMENT_INELIGIBLE,)


def test_a_halted_or_unpriced_instrument_excludes_whoever_needs_it() -> None:
    halted = Allocations((Allocation("BTC", D("0.5")), Allocation("XRP", D("0.5"))))
    assert check(OperationType.ENROLLMENT, None, allocations=halted)[1] == (
        Reason.INSTRUMENT_INELIGIBLE,
    )
    holds_xrp = active(Holdings({"XRP": D("10")}))
    assert check(OperationType.LIQUIDATION, holds_xrp, amount=None, allocations=None)[1] == (
        Reason.INSTRUMENT_INELIGIBLE,
    )
    unpriced = Allocations((Allocation("ADA", D(1)),))
    assert check(OperationType.ENROLLMENT, None, allocations=unpriced)[1] == (
        Reason.INSTRUMENT_INELIGIBLE,
    )


def test_partial_sell_must_be_covered_at_the_indicative_price_with_no_hidden_buffer() -> None:
    two_assets = Allocations((Allocation("BTC", D("0.5")), Allocation("ETH", D("0.5"))))
    # holds 600 of BTC and 300 of ETH: 600.00 asks 300.00 of each, all the ETH, and is covered
    assert check(OperationType.PARTIAL_SELL, active(), amount="600.00", allocations=two_assets)[
        0
    ] is (Outcome.APPROVED)
    assert check(OperationType.PARTIAL_SELL, active(), amount="600.02", allocations=two_assets)[
        1
    ] == (Reason.INSUFFICIENT_BALANCE,)


def test_the_check_leaves_the_float_to_the_reservation_in_request_order() -> None:
    """Buyers are not turned away for float at the check: chunks are checked in parallel, so
    the float is reserved once for the whole Operation in request order (see test_allotment)."""
    terms = OperationTerms(OP, OperationType.ENROLLMENT, BLUE_CHIP)
    credit = CreditCheck(terms, MARKET)
    outcomes = [
        credit.check(ParticipantOrder(code, D(amount)), None, ACTIVE).outcome
        for code, amount in [("A", "100"), ("B", "200000000")]
    ]
    assert outcomes == [Outcome.APPROVED, Outcome.APPROVED]


def test_amounts_too_small_for_any_leg_are_skipped_as_dust() -> None:
    assert check(OperationType.ENROLLMENT, None, amount="0.50") == (Outcome.SKIPPED, (Reason.DUST,))


def test_rebalance_within_the_drift_tolerance_is_skipped() -> None:
    balanced = active(Holdings({"BTC": D("0.01"), "ETH": D("0.12"), "SOL": D("1.6")}))
    outcome = check(OperationType.REBALANCE, balanced, amount=None, tolerance=D("0.05"))
    assert outcome == (Outcome.SKIPPED, (Reason.WITHIN_TOLERANCE,))
    outcome = check(OperationType.REBALANCE, active(), amount=None, tolerance=D("0.05"))
    assert outcome[0] is Outcome.APPROVED


def test_liquidating_a_trader_holding_only_cash_still_pays_it_out() -> None:
    cash_only = active(Holdings({}, D("3.21")))
    assert check(OperationType.LIQUIDATION, cash_only, amount=None, allocations=None)[0] is (
        Outcome.APPROVED
    )
    empty = active(Holdings())
    assert check(OperationType.LIQUIDATION, empty, amount=None, allocations=None) == (
        Outcome.SKIPPED,
        (Reason.DUST,),
    )
