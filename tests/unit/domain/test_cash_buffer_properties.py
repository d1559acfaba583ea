"""Properties of the cash buffer in the Operation maths (`domain.calculators`).

A buffer b (a Strategy policy's `cash_buffer`, 0 to 0.20) is a share of each Trader's value
that every buy leaves in cash. Markets, allocations and holdings are drawn as in
`test_calculator_properties`; f is the fiat minor unit, u an asset's precision unit, m its
minimum notional, P its price. Every call runs in the domain's arithmetic context, as the
stages run it.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.allocations import Allocations
from domain.calculators import Market, buy_legs, drift, rebalance_legs
from domain.legs import Holdings, Leg
from domain.money import ARITHMETIC, ceil_to, floor_to, unit
from domain.statuses import Side
from tests.unit.domain.strategies import (
    allocation_bodies,
    amounts,
    cash_buffers,
    holdings_in,
    markets,
    parsed,
    rebalance_slack,
    rebalance_targets,
)

FAST = settings(max_examples=150, deadline=None)
ZERO = Decimal(0)


@st.composite
def buffered_buys(draw: st.DrawFn) -> tuple[Market, Allocations, Decimal, Decimal]:
    market = draw(markets())
    allocations = parsed(draw(allocation_bodies()), market)
    fiat = market.fiat_precision
    amount = draw(amounts(unit(fiat), Decimal(100_000), fiat))
    return market, allocations, amount, draw(cash_buffers())


@st.composite
def buffered_rebalances(draw: st.DrawFn) -> tuple[Market, Allocations, Holdings, Decimal]:
    """Holdings as drawn elsewhere, their cash sometimes far above any buffer, sometimes 0."""
    market = draw(markets())
    holdings = draw(holdings_in(market))
    cash = draw(
        st.one_of(
            st.just(holdings.cash), st.just(ZERO), amounts("0.00", "100000.00", 2).map(Decimal)
        )
    )
    holdings = Holdings(holdings.positions, floor_to(cash, market.fiat_precision))
    return market, parsed(draw(allocation_bodies()), market), holdings, draw(cash_buffers())


def spent(legs: tuple[Leg, ...]) -> Decimal:
    return sum((leg.notional if leg.side is Side.BUY else -leg.notional for leg in legs), ZERO)


# -- enrollment and top-up ------------------------------------------------------------


@FAST
@given(buffered_buys())
def test_a_buy_invests_at_most_the_amount_less_its_buffer(
    case: tuple[Market, Allocations, Decimal, Decimal],
) -> None:
    """Exactly: cost <= A x (1 - b), so the cash left aside, A - cost, is at least A x b
    (hence at least floor_f(A x b)). And it is not much more: the invested share is
    floor_f(A x (1 - b)), less than f under A x (1 - b), and each asset then falls short of
    its share by less than ceil_f(u x P) (plus m when its leg is dust), as without a buffer."""
    market, allocations, amount, buffer = case
    with localcontext(ARITHMETIC):
        legs = buy_legs(amount, allocations, market, buffer)
        cost = spent(legs)
        assert all(leg.side is Side.BUY for leg in legs)
        assert cost <= amount * (1 - buffer)
        assert amount - cost >= amount * buffer
        assert amount - cost >= floor_to(amount * buffer, market.fiat_precision)
        kept = {leg.asset for leg in legs}
        shortfall = ZERO
        for allocation in allocations:
            asset = allocation.asset
            step = ceil_to(
                unit(market.precision(asset)) * market.prices[asset], market.fiat_precision
            )
            shortfall += step if asset in kept else step + market.min_notional(asset)
        assert amount - cost < amount * buffer + unit(market.fiat_precision) + shortfall


@FAST
@given(buffered_buys())
def test_a_buy_with_a_buffer_buys_what_its_invested_share_would_buy_unbuffered(
    case: tuple[Market, Allocations, Decimal, Decimal],
) -> None:
    """The buffer only shrinks the amount (rounded down to the grid); every other money rule
    of a buy (split, quantities down, costs up, dust) is the unbuffered one."""
    market, allocations, amount, buffer = case
    with localcontext(ARITHMETIC):
        invested = floor_to(amount * (1 - buffer), market.fiat_precision)
        assert buy_legs(amount, allocations, market, buffer) == buy_legs(
            invested, allocations, market
        )


@FAST
@given(buffered_buys(), st.sampled_from(["0", "0.0", "0.000000"]))
def test_a_zero_buffer_buys_exactly_as_without_one(
    case: tuple[Market, Allocations, Decimal, Decimal], zero: str
) -> None:
    market, allocations, amount, _ = case
    with localcontext(ARITHMETIC):
        assert buy_legs(amount, allocations, market, Decimal(zero)) == buy_legs(
            amount, allocations, market
        )


# -- rebalance ------------------------------------------------------------------------


def buffer_bound(
    allocations: Allocations,
    holdings: Holdings,
    legs: tuple[Leg, ...],
    market: Market,
    buffer: Decimal,
) -> Decimal:
    """How far below V x b a rebalance that buys nothing may leave the cash (a strict bound).

    A sell rounds its proceeds down (under f per sell leg) and its quantity down, so an
    over-weight asset it sells stays less than u above its target (u x P of cash not raised);
    one whose excess was not sold (under one u, or a dust leg: floor_f(q x P) < m, so
    q x P < m + f) keeps less than u x P + m + f. Under-weight assets, not bought, only add
    cash, and assets outside the allocations are sold whole.
    """
    targets = rebalance_targets(allocations, holdings, market.prices, buffer)
    sold = {leg.asset for leg in legs if leg.side is Side.SELL}
    fiat = unit(market.fiat_precision)
    bound = fiat * len(sold)
    for asset in allocations.assets:
        if holdings.quantity(asset) > targets[asset]:
            bound += unit(market.precision(asset)) * market.prices[asset]
            if asset not in sold:
                bound += market.min_notional(asset) + fiat
    return bound


@FAST
@given(buffered_rebalances())
def test_a_rebalance_leaves_its_buffer_in_cash(
    case: tuple[Market, Allocations, Holdings, Decimal],
) -> None:
    """With V the value at the prices used: a rebalance that buys anything ends with cash of
    at least V x b, exactly (its buys are paid from floor_f(cash + sells - V x b) at most).
    One that buys nothing (cash and sells did not cover the buffer) ends with its cash plus
    every sell's proceeds, short of V x b by less than `buffer_bound`."""
    market, allocations, holdings, buffer = case
    with localcontext(ARITHMETIC):
        legs = rebalance_legs(allocations, holdings, market, buffer)
        after = holdings.after(legs, ZERO, ZERO)
        reserve = holdings.value(market.prices) * buffer
        if any(leg.side is Side.BUY for leg in legs):
            assert after.cash >= reserve
        else:
            bound = buffer_bound(allocations, holdings, legs, market, buffer)
            assert after.cash > reserve - bound or after.cash >= reserve
        assert after.cash >= 0


@FAST
@given(buffered_rebalances())
def test_a_buffered_rebalance_keeps_value_and_ends_near_its_buffered_targets(
    case: tuple[Market, Allocations, Holdings, Decimal],
) -> None:
    """Value conserved up to rounding (under f per leg, never gained), and every allocated
    asset within the unbuffered bound of V x (1 - b) x w / P (`rebalance_slack`)."""
    market, allocations, holdings, buffer = case
    with localcontext(ARITHMETIC):
        legs = rebalance_legs(allocations, holdings, market, buffer)
        after = holdings.after(legs, ZERO, ZERO)
        before_value = holdings.value(market.prices)
        after_value = after.value(market.prices)
        assert after_value <= before_value
        assert before_value - after_value < unit(market.fiat_precision) * len(legs) or (
            before_value == after_value
        )
        assert all(q > 0 for q in after.positions.values())
        targets = rebalance_targets(allocations, holdings, market.prices, buffer)
        slack = rebalance_slack(allocations, holdings, legs, market, buffer)
        for asset in allocations.assets:
            gap = after.quantity(asset) - targets[asset]
            assert gap <= slack[asset].above, (asset, gap, slack[asset])
            assert gap > -slack[asset].below, (asset, gap, slack[asset])


@FAST
@given(buffered_rebalances(), st.sampled_from(["0", "0.00", "0.000000"]))
def test_a_zero_buffer_rebalances_and_measures_drift_exactly_as_without_one(
    case: tuple[Market, Allocations, Holdings, Decimal], zero: str
) -> None:
    market, allocations, holdings, _ = case
    with localcontext(ARITHMETIC):
        assert rebalance_legs(allocations, holdings, market, Decimal(zero)) == rebalance_legs(
            allocations, holdings, market
        )
        assert drift(holdings, allocations, market, Decimal(zero)) == drift(
            holdings, allocations, market
        )
