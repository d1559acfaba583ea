"""Credit check: may this Trader take part in this Operation? Every leg, every rule, at once.

A Trader failing any check is excluded entirely with every reason that applies (the first is
its `status_reason`); the others go on. Checks run at the Operation's indicative prices (one
set for all its chunks). What depends on the locked price or on the platform's float is
decided again once the price is locked (`domain.allotment`): a partial sell that no longer
covers its amount, and buys the float cannot fund in request order, are rejected then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from uuid import UUID

from domain.allocations import Allocations
from domain.calculators import (
    Market,
    buy_legs,
    drift,
    liquidation_legs,
    partial_sell_plan,
    rebalance_legs,
)
from domain.eligibility import ParticipantProfile
from domain.legs import Holdings, Leg
from domain.money import ZERO
from domain.requests import ParticipantOrder
from domain.statuses import OperationType, Reason, TraderStatus


class Outcome(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    #: Extension (issue 19): its Operation was cancelled before it traded.
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class TraderSnapshot:
    """What the check needs to know of an existing Trader."""

    status: TraderStatus
    held_by: UUID | None
    holdings: Holdings


@dataclass(frozen=True)
class OperationTerms:
    """The Operation-wide inputs of its maths, read once from the Operation (`parameters`)
    and handed to every place that computes legs: the check, pricing's passes, settlement.

    `cash_buffer`: the share of each Trader's value its buys leave in cash (0: none, as in
    every Operation recorded without the parameter)."""

    operation_id: UUID
    type: OperationType
    allocations: Allocations | None
    drift_tolerance: Decimal | None = None
    cash_buffer: Decimal = ZERO


@dataclass(frozen=True)
class CreditDecision:
    participant_code: str
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    legs: tuple[Leg, ...] = ()

    @property
    def reason(self) -> str:
        return self.reasons[0].value if self.reasons else ""


@dataclass
class CreditCheck:
    """Checks the Traders of one chunk, in request order, at the Operation's indicative prices."""

    terms: OperationTerms
    market: Market
    decisions: list[CreditDecision] = field(default_factory=list)

    def check(
        self,
        order: ParticipantOrder,
        trader: TraderSnapshot | None,
        profile: ParticipantProfile | None,
    ) -> CreditDecision:
        reasons = _trader_reasons(self.terms, trader)
        reasons += _participant_reasons(profile)
        holdings = trader.holdings if trader else Holdings()
        assets = _assets_touched(self.terms, holdings)
        reasons += _instrument_reasons(assets, self.market, profile)
        decision = self._decide(order, holdings, _unique(reasons))
        self.decisions.append(decision)
        return decision

    def _decide(
        self, order: ParticipantOrder, holdings: Holdings, reasons: list[Reason]
    ) -> CreditDecision:
        code = order.code
        if reasons:
            return CreditDecision(code, Outcome.REJECTED, tuple(reasons))
        terms = self.terms
        if (
            terms.type is OperationType.REBALANCE
            and terms.drift_tolerance is not None
            and terms.allocations is not None
            and drift(holdings, terms.allocations, self.market, terms.cash_buffer)
            <= terms.drift_tolerance
        ):
            return CreditDecision(code, Outcome.SKIPPED, (Reason.WITHIN_TOLERANCE,))
        if terms.type is OperationType.PARTIAL_SELL:
            assert terms.allocations is not None and order.amount is not None
            plan = partial_sell_plan(order.amount, terms.allocations, holdings, self.market)
            if plan.skip:
                return CreditDecision(code, Outcome.SKIPPED, (Reason.DUST,))
            if plan.refusal is not None:
                return CreditDecision(code, Outcome.REJECTED, (plan.refusal,))
            return CreditDecision(code, Outcome.APPROVED, (), plan.legs)
        legs = planned_legs(terms, order, holdings, self.market)
        if not legs and not (terms.type is OperationType.LIQUIDATION and holdings.cash > 0):
            return CreditDecision(code, Outcome.SKIPPED, (Reason.DUST,))
        return CreditDecision(code, Outcome.APPROVED, (), legs)


def planned_legs(
    terms: OperationTerms, order: ParticipantOrder, holdings: Holdings, market: Market
) -> tuple[Leg, ...]:
    """The legs of one Trader for this Operation at `market`'s prices."""
    allocations = terms.allocations
    if terms.type is OperationType.LIQUIDATION:
        return liquidation_legs(holdings, market)
    assert allocations is not None, "only liquidation carries no allocations"
    if terms.type is OperationType.REBALANCE:
        return rebalance_legs(allocations, holdings, market, terms.cash_buffer)
    assert order.amount is not None, "funded operations carry an amount per participant"
    if terms.type is OperationType.PARTIAL_SELL:
        return partial_sell_plan(order.amount, allocations, holdings, market).legs
    return buy_legs(order.amount, allocations, market, terms.cash_buffer)


def _trader_reasons(terms: OperationTerms, trader: TraderSnapshot | None) -> list[Reason]:
    reasons: list[Reason] = []
    if terms.type is OperationType.ENROLLMENT:
        if trader is not None and trader.status is TraderStatus.ACTIVE:
            reasons.append(Reason.TRADER_ALREADY_EXISTS)
    elif trader is None or trader.status is TraderStatus.PENDING:
        reasons.append(Reason.TRADER_NOT_FOUND)
    elif trader.status is not TraderStatus.ACTIVE:
        reasons.append(Reason.TRADER_NOT_ACTIVE)
    if trader is not None and trader.held_by not in (None, terms.operation_id):
        reasons.append(Reason.CONCURRENT_HOLD)
    return reasons


def _participant_reasons(profile: ParticipantProfile | None) -> list[Reason]:
    if profile is None or not profile.may_trade:
        return [Reason.PARTICIPANT_INELIGIBLE]
    return []


def _assets_touched(terms: OperationTerms, holdings: Holdings) -> list[str]:
    allocated = list(terms.allocations.assets) if terms.allocations else []
    if terms.type in (OperationType.REBALANCE, OperationType.LIQUIDATION):
        return sorted(set(allocated) | set(holdings.held_assets))
    return allocated


def _instrument_reasons(
    assets: Sequence[str], market: Market, profile: ParticipantProfile | None
) -> list[Reason]:
    for asset in assets:
        instrument = market.catalogue.find(asset, market.quoted_currency)
        price = market.prices.get(asset)
        priced = price is not None and price.is_finite() and price > 0
        tradable = instrument is not None and instrument.tradable and priced
        if not tradable or (profile is not None and not profile.may_hold(asset)):
            return [Reason.INSTRUMENT_INELIGIBLE]
    return []


def _unique(reasons: list[Reason]) -> list[Reason]:
    return list(dict.fromkeys(reasons))
