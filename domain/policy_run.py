"""One automatic run of a rebalancing policy: which Traders it rebalances, and why.

The scheduler asks the venue for indicative prices and the `Trading` service loads the
Strategy's auto-rebalance Traders from the store (every acknowledged write included); this
module decides, purely, from those: a Trader is rebalanced when its weights at the prices are
outside the policy's drift band (against the model's targets, less the cash buffer) and its
last rebalance, manual or automatic, is at least the cooldown ago. The counts it returns are
recorded with the run (`Strategy.PolicyRunRecorded`), so an auditor can tell why each Trader
was or was not traded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.allocations import Allocation, Allocations
from domain.legs import Holdings
from domain.policy import DriftBand, Policy


@dataclass(frozen=True)
class TraderState:
    """What a run needs of one Trader: its holdings and when it was last rebalanced."""

    participant_code: str
    holdings: Holdings
    rebalanced_on: datetime | None = None


@dataclass(frozen=True)
class RunSelection:
    """The Traders a run rebalances (`participants`, sorted) and what it found: how many it
    looked at, how many were outside the band, how many of those were still cooling down,
    and how many it could not value (a held asset without a price)."""

    participants: tuple[str, ...]
    evaluated: int
    outside: int
    cooling: int
    unpriced: int = 0


def buffered_targets(model: Allocations, cash_buffer: Decimal) -> Allocations:
    """The model's targets once the cash buffer is set aside: each weight times (1 - buffer),
    so they sum to 1 - buffer and the cash is the rest (the weights a rebalance aims at)."""
    if not cash_buffer:
        return model
    invested = 1 - cash_buffer
    return Allocations(tuple(Allocation(a.asset, a.weight * invested) for a in model))


def weights_at(holdings: Holdings, prices: Mapping[str, Decimal]) -> dict[str, Decimal] | None:
    """Each held asset's share of the Trader's value (cash included in the value) at
    `prices`; empty when it has no value, None when a held asset has no price."""
    if any(q and asset not in prices for asset, q in holdings.positions.items()):
        return None
    value = holdings.value(prices)
    if value <= 0:
        return {}
    return {a: holdings.quantity(a) * prices[a] / value for a in holdings.held_assets}


def select_for_run(
    traders: Iterable[TraderState],
    model: Allocations,
    policy: Policy,
    prices: Mapping[str, Decimal],
    now: datetime,
) -> RunSelection:
    """The run's Traders: outside the band and cooled down."""
    band = policy.drift_band or DriftBand()
    targets = buffered_targets(model, policy.cash_buffer)
    chosen: list[str] = []
    evaluated = outside = cooling = unpriced = 0
    for trader in traders:
        weights = weights_at(trader.holdings, prices)
        if weights is None:
            unpriced += 1
            continue
        evaluated += 1
        if not _outside(band, weights, targets, trader.holdings, prices):
            continue
        outside += 1
        if not policy.cooled_down(trader.rebalanced_on, now):
            cooling += 1
            continue
        chosen.append(trader.participant_code)
    return RunSelection(tuple(sorted(chosen)), evaluated, outside, cooling, unpriced)


def _outside(
    band: DriftBand,
    weights: Mapping[str, Decimal],
    targets: Allocations,
    holdings: Holdings,
    prices: Mapping[str, Decimal],
) -> bool:
    # A Trader holding only cash has no weights, yet is as far from its targets as can be:
    # with a value it is outside any band (a model asks it to be invested).
    if not weights and holdings.value(prices) > 0:
        return True
    return band.outside(weights, targets)


def price_evidence(prices: Mapping[str, Decimal]) -> dict[str, str]:
    """The prices as a run records them (decimal strings, sorted by asset)."""
    return {asset: str(prices[asset]) for asset in sorted(prices)}
