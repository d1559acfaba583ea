"""Operation maths: one function per Operation type, from holdings and prices to legs.

The same functions run twice in an Operation's life: at credit check with indicative prices
(to decide who can take part) and at settlement with the locked prices (to decide what each
Trader actually trades). They are pure: the same inputs always give the same legs, which is
what lets an auditor replay a settlement and get the same numbers.

Rounding (see `domain.money`): bought quantities round down so a buy never exceeds its budget;
fiat paid by a Trader rounds up, fiat received rounds down; what rounding leaves stays in the
Trader's cash and is counted by its next rebalance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from domain.allocations import Allocations
from domain.catalogue import InstrumentCatalogue
from domain.legs import Holdings, Leg
from domain.money import ZERO, ceil_to, floor_to
from domain.statuses import Side


@dataclass(frozen=True)
class Market:
    """What the maths needs to know about the market: prices and each asset's precisions."""

    quoted_currency: str
    fiat_precision: int
    catalogue: InstrumentCatalogue
    prices: Mapping[str, Decimal]

    def precision(self, asset: str) -> int:
        return self.catalogue.precision(asset, self.quoted_currency)

    def min_notional(self, asset: str) -> Decimal:
        return self.catalogue.get(asset, self.quoted_currency).min_notional

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


def buy_legs(amount: Decimal, allocations: Allocations, market: Market) -> tuple[Leg, ...]:
    """Enrollment and top-up: buy `amount x weight` of each asset."""
    legs = []
    for allocation in allocations:
        budget = floor_to(amount * allocation.weight, market.fiat_precision)
        quantity = market.largest_buy_within(allocation.asset, budget)
        legs.append(market.buy(allocation.asset, quantity))
    return without_dust(legs, market)


def partial_sell_legs(
    amount: Decimal, allocations: Allocations, holdings: Holdings, market: Market
) -> tuple[Leg, ...]:
    """Sell `amount x weight` worth of each asset, never more than is held.

    The quantity rounds up so the proceeds reach the requested worth when the Trader holds
    enough; the credit check has already excluded Traders who cannot cover it.
    """
    legs = []
    for allocation in allocations:
        worth = amount * allocation.weight
        wanted = ceil_to(
            worth / market.prices[allocation.asset], market.precision(allocation.asset)
        )
        legs.append(market.sell(allocation.asset, min(wanted, holdings.quantity(allocation.asset))))
    return without_dust(legs, market)


def liquidation_legs(holdings: Holdings, market: Market) -> tuple[Leg, ...]:
    """Sell exactly everything held. Dust is sold too: a liquidated Trader keeps nothing."""
    return tuple(market.sell(asset, holdings.quantity(asset)) for asset in holdings.held_assets)


def current_weights(holdings: Holdings, market: Market) -> dict[str, Decimal]:
    value = holdings.value(market.prices)
    if value <= 0:
        return {}
    return {a: holdings.quantity(a) * market.prices[a] / value for a in holdings.held_assets}


def drift(holdings: Holdings, allocations: Allocations, market: Market) -> Decimal:
    """The largest absolute gap between an asset's current weight and its target weight."""
    weights = current_weights(holdings, market)
    assets = set(weights) | set(allocations.assets)
    return max((abs(weights.get(a, ZERO) - allocations.weight_of(a)) for a in assets), default=ZERO)


def rebalance_legs(allocations: Allocations, holdings: Holdings, market: Market) -> tuple[Leg, ...]:
    """Move a Trader to `allocations` over its whole value (positions at price + cash).

    Sells come first and pay for the buys together with the cash; no outside money is used.
    Assets absent from the allocations are sold entirely (dust included), so none linger.
    Each asset ends within one precision unit of its target, unless dust or the fiat grid
    (at most one minor unit per leg) keeps it a little further.
    """
    value = holdings.value(market.prices)
    if value <= 0:
        return ()
    sells: list[Leg] = []
    buys: list[tuple[str, Decimal]] = []
    for asset in _rebalance_assets(allocations, holdings):
        held = holdings.quantity(asset)
        weight = allocations.weight_of(asset)
        target = value * weight / market.prices[asset]
        if weight == 0:
            sells.append(market.sell(asset, held))
        elif target < held:
            excess = ceil_to(held - target, market.precision(asset))
            leg = market.sell(asset, min(excess, held))
            if not market.is_dust(leg):
                sells.append(leg)
        elif target > held:
            buys.append((asset, target - held))
    funds = holdings.cash + sum((leg.notional for leg in sells), ZERO)
    legs: list[Leg] = [leg for leg in sells if leg.quantity > 0]
    for asset, shortfall in buys:
        quantity = min(
            floor_to(shortfall, market.precision(asset)),
            market.largest_buy_within(asset, floor_to(funds, market.fiat_precision)),
        )
        leg = market.buy(asset, quantity)
        if quantity > 0 and not market.is_dust(leg):
            legs.append(leg)
            funds -= leg.notional
    return tuple(legs)


def _rebalance_assets(allocations: Allocations, holdings: Holdings) -> list[str]:
    """Held assets first (sorted), then new allocation assets in request order."""
    held = list(holdings.held_assets)
    return held + [a for a in allocations.assets if a not in held]
