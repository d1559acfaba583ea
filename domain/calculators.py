"""Operation maths: one function per Operation type, from holdings and prices to legs.

The same functions run twice in an Operation's life: at credit check with indicative prices
(to decide who can take part) and at settlement with the locked prices (to decide what each
Trader actually trades). They are pure: the same inputs always give the same legs, which is
what lets an auditor replay a settlement and get the same numbers.

Rounding (see `domain.money`, and the README's money rules): quantities round down (a buy never
exceeds its budget, a rebalance never sells below its target), except a partial sell's, which
round up so the Trader receives exactly the fiat it asked for; fiat paid by a Trader rounds up,
fiat received rounds down. What rounding leaves stays in the Trader's cash and is counted by its
next rebalance (and paid out by its liquidation).

Cash buffer (a Strategy policy's `cash_buffer`, recorded on the Operation): a share b of each
Trader's value that every buy leaves in cash. An enrollment or top-up invests
floor(amount x (1 - b)); a rebalance aims at value x (1 - b) x weight and keeps value x b out
of its buys' funds. b = 0 is exactly the maths without a buffer.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from domain.allocations import Allocations
from domain.catalogue import InstrumentCatalogue
from domain.legs import Holdings, Leg
from domain.money import ZERO, ceil_to, floor_to, unit
from domain.statuses import Reason, Side


@dataclass(frozen=True)
class Market:
    """What the maths needs to know about the market: prices and each asset's precisions."""

    quoted_currency: str
    fiat_precision: int
    catalogue: InstrumentCatalogue
    prices: Mapping[str, Decimal]

    def precision(self, asset: str) -> int:
        found = self._precisions.get(asset)
        if found is None:
            found = self._precisions[asset] = self.catalogue.precision(asset, self.quoted_currency)
        return found

    def min_notional(self, asset: str) -> Decimal:
        found = self._minimums.get(asset)
        if found is None:
            found = self._minimums[asset] = self.catalogue.get(
                asset, self.quoted_currency
            ).min_notional
        return found

    # Per-asset lookups, remembered: the maths asks for them on every leg of every Trader.
    @functools.cached_property
    def _precisions(self) -> dict[str, int]:
        return {}

    @functools.cached_property
    def _minimums(self) -> dict[str, Decimal]:
        return {}

    def buy(self, asset: str, quantity: Decimal) -> Leg:
        notional = ceil_to(quantity * self.prices[asset], self.fiat_precision)
        return Leg(Side.BUY, asset, quantity, notional)

    def sell(self, asset: str, quantity: Decimal) -> Leg:
        notional = floor_to(quantity * self.prices[asset], self.fiat_precision)
        return Leg(Side.SELL, asset, quantity, notional)

    def largest_buy_within(self, asset: str, budget: Decimal) -> Decimal:
        """The most of `asset` whose cost (rounded up) fits in `budget` (on the fiat grid).

        Because `budget` is on the minor-unit grid, ceil(q * p) <= budget iff q * p <= budget,
        so rounding the quantity down is enough.
        """
        if budget <= 0:
            return ZERO
        return floor_to(budget / self.prices[asset], self.precision(asset))

    def is_dust(self, leg: Leg) -> bool:
        return leg.notional < self.min_notional(leg.asset)


def without_dust(legs: list[Leg], market: Market) -> tuple[Leg, ...]:
    return tuple(leg for leg in legs if leg.quantity > 0 and not market.is_dust(leg))


def split_fiat(amount: Decimal, allocations: Allocations, precision: int) -> dict[str, Decimal]:
    """`amount x weight` per asset on the fiat grid, summing to exactly `amount`.

    Each share rounds down, and the few minor units that leaves go one each to the shares that
    lost the most to rounding (ties: allocation order), so no asset is systematically short.
    """
    step = unit(precision)
    exact = {a.asset: amount * a.weight for a in allocations}
    shares = {asset: floor_to(value, precision) for asset, value in exact.items()}
    left = int((amount - sum(shares.values(), ZERO)) / step)
    by_loss = sorted(
        exact, key=lambda asset: shares[asset] - exact[asset]
    )  # stable: ties keep order
    for asset in by_loss[:left]:
        shares[asset] += step
    return shares


def invested(amount: Decimal, cash_buffer: Decimal, precision: int) -> Decimal:
    """What a buy of `amount` may spend: `amount x (1 - buffer)` rounded *down* to the fiat
    grid, so the cash left aside is never less than `amount x buffer`."""
    if not cash_buffer:
        return amount
    return floor_to(amount * (1 - cash_buffer), precision)


def buy_legs(
    amount: Decimal, allocations: Allocations, market: Market, cash_buffer: Decimal = ZERO
) -> tuple[Leg, ...]:
    """Enrollment and top-up: buy `amount x weight` of each asset (its exact fiat share) out
    of what the cash buffer leaves to invest; the rest stays in the Trader's cash."""
    legs = []
    spent = invested(amount, cash_buffer, market.fiat_precision)
    for asset, budget in split_fiat(spent, allocations, market.fiat_precision).items():
        legs.append(market.buy(asset, market.largest_buy_within(asset, budget)))
    return without_dust(legs, market)


@dataclass(frozen=True)
class SellPlan:
    """A partial sell for one Trader at one set of prices: the legs, or why there are none.

    `refusal` is `insufficient_balance` (some leg needs more than is held) or `dust` (some leg
    is below its instrument's minimum notional: with only some legs so, the exact amount cannot
    be paid; with all of them, there is nothing to sell: `skip`).
    """

    legs: tuple[Leg, ...] = ()
    refusal: Reason | None = None
    skip: bool = False


def partial_sell_plan(
    amount: Decimal, allocations: Allocations, holdings: Holdings, market: Market
) -> SellPlan:
    """Sell enough of each asset for exactly its fiat share of `amount`, or nothing at all.

    Each asset's share (`split_fiat`) is on the fiat grid, so the smallest quantity whose
    proceeds (rounded down) reach it is its share over the price, rounded *up* to the asset's
    grid. The Trader then receives exactly `amount`; what the round-up sold beyond it (under
    one precision unit per leg) stays in the Trader's cash. A Trader that does not hold that
    much of every asset is refused whole: a sell is never trimmed to what is held.
    """
    legs, dust = [], 0
    for asset, share in split_fiat(amount, allocations, market.fiat_precision).items():
        if share <= 0:
            continue
        quantity = ceil_to(share / market.prices[asset], market.precision(asset))
        if quantity > holdings.quantity(asset):
            return SellPlan(refusal=Reason.INSUFFICIENT_BALANCE)
        leg = market.sell(asset, quantity)
        dust += market.is_dust(leg)
        legs.append(leg)
    if dust:
        return SellPlan(refusal=Reason.DUST, skip=dust == len(legs))
    return SellPlan(tuple(legs))


def liquidation_legs(holdings: Holdings, market: Market) -> tuple[Leg, ...]:
    """Sell exactly everything held. Dust is sold too: a liquidated Trader keeps nothing."""
    return tuple(market.sell(asset, holdings.quantity(asset)) for asset in holdings.held_assets)


def current_weights(holdings: Holdings, market: Market) -> dict[str, Decimal]:
    value = holdings.value(market.prices)
    if value <= 0:
        return {}
    return {a: holdings.quantity(a) * market.prices[a] / value for a in holdings.held_assets}


def drift(
    holdings: Holdings, allocations: Allocations, market: Market, cash_buffer: Decimal = ZERO
) -> Decimal:
    """The largest absolute gap between an asset's current weight and its target weight.

    With a cash buffer b the targets are what a rebalance aims at: each weight x (1 - b), and
    cash, measured as one more line, the rest (b). Without one, cash is not a line (as it
    never was): its target would be 0 and it holds only rounding leftovers.
    """
    weights = current_weights(holdings, market)
    assets = set(weights) | set(allocations.assets)
    keep = 1 - cash_buffer
    gaps = (abs(weights.get(a, ZERO) - allocations.weight_of(a) * keep) for a in assets)
    widest = max(gaps, default=ZERO)
    if not cash_buffer:
        return widest
    value = holdings.value(market.prices)
    cash_weight = holdings.cash / value if value > 0 else ZERO
    return max(widest, abs(cash_weight - cash_buffer))


def rebalance_legs(
    allocations: Allocations, holdings: Holdings, market: Market, cash_buffer: Decimal = ZERO
) -> tuple[Leg, ...]:
    """Move a Trader to `allocations` over its whole value (positions at price + cash), or,
    with a cash buffer b, over `value x (1 - b)`: the buys are then paid only from what the
    cash and the sells hold beyond `value x b`, so a Trader that buys ends with at least that
    much cash (at these prices), and one short of it sells over-weight assets to raise it.

    Sells come first and pay for the buys together with the cash; no outside money is used.
    Quantities round down both ways (a sell never takes an asset below its target, a buy never
    costs more than it may). Assets absent from the allocations are sold entirely (dust
    included), so none linger. Rounding the sells down leaves a little less fiat than the buys
    want; that shortfall is shared by the buys in proportion to their cost, so no asset is
    systematically the one left under target. Dust legs are dropped.
    """
    value = holdings.value(market.prices)
    if value <= 0:
        return ()
    reserve = value * cash_buffer if cash_buffer else ZERO
    aimed = value - reserve if cash_buffer else value
    sells: list[Leg] = []
    wanted: list[tuple[str, Decimal]] = []
    for asset in _rebalance_assets(allocations, holdings):
        held = holdings.quantity(asset)
        weight = allocations.weight_of(asset)
        target = aimed * weight / market.prices[asset]
        if weight == 0:
            sells.append(market.sell(asset, held))
        elif target < held:
            leg = market.sell(asset, floor_to(held - target, market.precision(asset)))
            if leg.quantity > 0 and not market.is_dust(leg):
                sells.append(leg)
        elif target > held:
            quantity = floor_to(target - held, market.precision(asset))
            if quantity > 0:
                wanted.append((asset, quantity))
    # The buffer is kept out of the funds exactly (value x b, not rounded): the floor then
    # leaves the buys nothing of it to spend.
    funds = floor_to(
        holdings.cash + sum((leg.notional for leg in sells), ZERO) - reserve,
        market.fiat_precision,
    )
    return (*(leg for leg in sells if leg.quantity > 0), *_funded_buys(wanted, funds, market))


def _funded_buys(
    wanted: list[tuple[str, Decimal]], funds: Decimal, market: Market
) -> tuple[Leg, ...]:
    # Costs first, legs once: a rebalance's buys nearly always share a shortfall (the sells
    # round down), and building every leg twice was a tenth of the allotment pass.
    costs = [
        ceil_to(quantity * market.prices[asset], market.fiat_precision)
        for asset, quantity in wanted
    ]
    cost = sum(costs, ZERO)
    if cost <= funds:
        legs = [Leg(Side.BUY, a, q, c) for (a, q), c in zip(wanted, costs, strict=True)]
    else:  # share the shortfall: each buy gets its cost's share of the funds
        legs = [
            market.buy(
                asset,
                min(
                    quantity,
                    market.largest_buy_within(
                        asset, floor_to(funds * own / cost, market.fiat_precision)
                    ),
                ),
            )
            for (asset, quantity), own in zip(wanted, costs, strict=True)
        ]
    return without_dust(legs, market)


def _rebalance_assets(allocations: Allocations, holdings: Holdings) -> list[str]:
    """Held assets first (sorted), then new allocation assets in request order."""
    held = list(holdings.held_assets)
    return held + [a for a in allocations.assets if a not in held]
