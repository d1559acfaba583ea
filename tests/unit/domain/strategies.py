"""Hypothesis strategies (and two shared oracles) for the domain's property tests.

Everything money-like is drawn as an integer of the smallest step and scaled, so every value
is exact and on its grid by construction: amounts on the fiat minor unit, quantities on the
asset's precision, weights in basis points that sum to exactly 10,000.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from hypothesis import strategies as st

from domain.allocations import Allocations, parse_allocations
from domain.calculators import Market
from domain.catalogue import FIAT_PRECISION, Instrument, InstrumentCatalogue
from domain.legs import Holdings, Leg
from domain.money import floor_to, unit
from domain.statuses import Side

ASSETS: tuple[str, ...] = ("BTC", "ETH", "SOL", "ADA", "AVAX")
QUOTED = "USD"
CENT = Decimal("0.01")
MAX_PRICE = 200_000


def on_grid(
    low: Decimal | str | int, high: Decimal | str | int, places: int
) -> st.SearchStrategy[Decimal]:
    """Decimals in [low, high] written with exactly `places` decimals."""
    step = Decimal(1).scaleb(-places)
    smallest = int(Decimal(low) / step)
    largest = int(Decimal(high) / step)
    return st.integers(smallest, largest).map(lambda n: Decimal(n).scaleb(-places))


# -- prices, amounts, moves -------------------------------------------------------------


def prices() -> st.SearchStrategy[Decimal]:
    """Mostly cent prices from 0.01 to 200,000; some written with 3 to 8 decimals."""
    more_decimals = st.integers(3, 8).flatmap(lambda places: on_grid("0.0001", MAX_PRICE, places))
    return st.one_of(on_grid(CENT, MAX_PRICE, 2), more_decimals.filter(lambda p: p > 0))


def price_sets(assets: Sequence[str] = ASSETS) -> st.SearchStrategy[dict[str, Decimal]]:
    return st.fixed_dictionaries({asset: prices() for asset in assets})


def amounts(
    low: Decimal | str = "1.00", high: Decimal | str = "100000.00", precision: int = 2
) -> st.SearchStrategy[Decimal]:
    """Fiat amounts on the currency's minor unit (USD cents by default)."""
    return on_grid(low, high, precision)


def price_moves() -> st.SearchStrategy[Decimal]:
    """A factor between indicative and locked price: up to 10% either way, often none."""
    return st.one_of(st.just(Decimal(1)), on_grid("0.9000", "1.1000", 4))


def moved(price: Decimal, factor: Decimal) -> Decimal:
    """`price` moved by `factor`, kept on at least the cent grid and never below one step."""
    places = max(2, -int(price.as_tuple().exponent))
    step = Decimal(1).scaleb(-places)
    return max(step, floor_to(price * factor, places))


@st.composite
def moved_prices(draw: st.DrawFn, indicative: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Locked prices: each indicative price moved independently by up to ±10%."""
    return {asset: moved(price, draw(price_moves())) for asset, price in indicative.items()}


# -- allocations ----------------------------------------------------------------------


@st.composite
def allocation_bodies(
    draw: st.DrawFn, assets: Sequence[str] = ASSETS, max_assets: int = 5
) -> list[dict[str, str]]:
    """A request's `allocations`: 1..5 distinct assets whose weights sum to exactly 1.

    Weights are whole basis points (each at least 1) written as decimal strings, sometimes
    with trailing zeros ("0.2500") and sometimes without ("0.25").
    """
    chosen = draw(st.lists(st.sampled_from(assets), min_size=1, max_size=max_assets, unique=True))
    cuts = draw(
        st.lists(
            st.integers(1, 9_999), min_size=len(chosen) - 1, max_size=len(chosen) - 1, unique=True
        )
    )
    bounds = [0, *sorted(cuts), 10_000]
    points = [high - low for low, high in itertools.pairwise(bounds)]
    normalise = draw(st.booleans())
    weights = [Decimal(p).scaleb(-4) for p in points]
    return [
        {"underlying_currency": asset, "weight": str(w.normalize() if normalise else w)}
        for asset, w in zip(chosen, weights, strict=True)
    ]


def parsed(body: list[dict[str, str]], market: Market) -> Allocations:
    """Allocations through the domain's own validation (what a request would carry)."""
    return parse_allocations(
        body, quoted_currency=market.quoted_currency, catalogue=market.catalogue, max_assets=20
    )


# -- participants ---------------------------------------------------------------------

ELIGIBLE = "active"
UNREGISTERED = "unregistered"
SUSPENDED = "suspended"


@dataclass(frozen=True)
class Entrant:
    """One participant of a generated batch, with how the platform registered them."""

    code: str
    amount: Decimal
    auto_rebalance: bool
    eligibility: str = ELIGIBLE

    def funded(self, amount: Decimal | None = None) -> dict[str, str | bool]:
        return {
            "participant_code": self.code,
            "amount": str(self.amount if amount is None else amount),
            "auto_rebalance": self.auto_rebalance,
        }


def participant_codes() -> st.SearchStrategy[str]:
    return st.text("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", min_size=3, max_size=8)


def participant_batches(
    min_size: int = 1,
    max_size: int = 8,
    *,
    ineligible: bool = True,
    amount_low: str = "1.00",
    amount_high: str = "5000.00",
) -> st.SearchStrategy[list[Entrant]]:
    """Participants with unique codes; about one in five not eligible when `ineligible`."""
    eligibility = (
        st.sampled_from([ELIGIBLE] * 8 + [UNREGISTERED, SUSPENDED])
        if ineligible
        else st.just(ELIGIBLE)
    )
    entrant = st.builds(
        Entrant,
        code=participant_codes(),
        amount=st.one_of(amounts(amount_low, amount_high), amounts("1.00", "20.00")),
        auto_rebalance=st.booleans(),
        eligibility=eligibility,
    )
    return st.lists(entrant, min_size=min_size, max_size=max_size, unique_by=lambda e: e.code)


# -- markets and holdings for the pure calculators -------------------------------------


@st.composite
def markets(draw: st.DrawFn, assets: Sequence[str] = ASSETS) -> Market:
    """A market in USD, EUR or JPY with per-asset precision (0..10) and minimum notional.

    The default catalogue lists every asset at 8 decimals and 1.00 minimum; drawing other
    precisions and minimums exercises the rounding rules where they bite hardest (a
    precision of 0 on an expensive asset, a minimum of zero that drops no leg at all).
    """
    currency = draw(st.sampled_from(["USD", "USD", "EUR", "JPY"]))
    fiat = FIAT_PRECISION[currency]
    instruments = []
    for asset in assets:
        precision = draw(st.one_of(st.just(8), st.integers(0, 10)))
        minimum = draw(st.sampled_from(["0", "1", "100", "1000"]))
        min_notional = Decimal(minimum).scaleb(-fiat)
        instruments.append(Instrument(asset, currency, precision, min_notional))
    return Market(currency, fiat, InstrumentCatalogue.of(instruments), draw(price_sets(assets)))


def cash_buffers() -> st.SearchStrategy[Decimal]:
    """A policy's cash buffer: 0 to 0.20 with 1 to 6 decimals (0.0025 is a quarter percent)."""
    return st.one_of(
        st.just(Decimal(0)),
        st.sampled_from(["0.0025", "0.01", "0.05", "0.2"]).map(Decimal),
        st.integers(1, 6).flatmap(lambda places: on_grid(0, "0.20", places)),
    )


@st.composite
def holdings_in(draw: st.DrawFn, market: Market, assets: Sequence[str] = ASSETS) -> Holdings:
    """A Trader's holdings: some assets worth up to 100,000 at `market`, plus residual cash.

    Holdings are a value (the calculators' input), not stored state: every combination drawn
    here is reachable through enrollments, top-ups and partial sells at varying prices.
    """
    positions = {}
    for asset in draw(st.lists(st.sampled_from(assets), unique=True, max_size=len(assets))):
        worth = draw(amounts("0.00", "100000.00"))
        quantity = floor_to(worth / market.prices[asset], market.precision(asset))
        if quantity > 0:
            positions[asset] = quantity
    cash = draw(st.one_of(st.just(Decimal(0)), amounts("0.00", "500.00")))
    return Holdings(positions, floor_to(cash, market.fiat_precision))


# -- shared oracles -------------------------------------------------------------------


@dataclass(frozen=True)
class Slack:
    """How far an asset may end from its rebalance target, in quantity, either way."""

    above: Decimal
    below: Decimal


def rebalance_targets(
    allocations: Allocations,
    before: Holdings,
    prices: Mapping[str, Decimal],
    cash_buffer: Decimal = Decimal(0),
) -> dict[str, Decimal]:
    """Target quantity V x (1 - b) x w / P of every asset held or allocated (V at `prices`,
    cash in; b the cash buffer)."""
    with localcontext(prec=80):
        aimed = before.value(prices) * (1 - cash_buffer)
        assets = set(before.held_assets) | set(allocations.assets)
        return {a: aimed * allocations.weight_of(a) / prices[a] for a in sorted(assets)}


def rebalance_slack(
    allocations: Allocations,
    before: Holdings,
    legs: Sequence[Leg],
    market: Market,
    cash_buffer: Decimal = Decimal(0),
) -> dict[str, Slack]:
    """The tightest bound the code supports on |end - target| for each allocated asset.

    Derivation, with f the fiat minor unit, u the asset's precision unit, m its minimum
    notional, P its price, n the number of assets held or allocated, D the value (at the locked
    price) of every over-weight asset whose sell leg was dropped as dust, and R the value
    the executed sells keep by rounding their quantities down (the sum of u_s x P_s):

    * Above target. A sell rounds its excess *down* to u, so the asset ends less than u above
      its target. A dropped (dust) sell of q = floor(excess) has floor_f(q x P) < m, so
      q < (m + f) / P and the asset stays less than u + (m + f) / P above.
    * Below target. A sell never ends below (weight-0 assets end at 0, their target). A buy
      wants floor(target - held), less than u short. Funds are cash plus the sells' proceeds;
      against the exact identity (buys' value = cash + over-weight excess), each executed
      sell brings less than u_s x P_s + f short, each dropped sell its whole excess (D), each
      wanted buy costs up to f more than its value, and the funds are floored once more: the
      buys are short of funds by S < f x (n + 1) + R + D in all. That shortfall is shared in
      proportion to cost, so one buy loses less than S + f of budget, (S + f) / P + u of
      quantity; a buy that is then dust (< m) is dropped, less than (m + f) / P further.
      Hence below < 2u + (S + 2f + m) / P.

    D matters: several over-weight assets each just under the minimum can together starve an
    under-weight asset by far more than one minimum notional (see the calculator tests).

    With a cash buffer b the targets are V x (1 - b) x w / P and the funds are reduced by
    exactly V x b, which the identity above loses on both sides: the same bound holds.
    """
    with localcontext(prec=80):
        targets = rebalance_targets(allocations, before, market.prices, cash_buffer)
        traded = {leg.asset for leg in legs}
        withheld = sum(
            (
                (before.quantity(a) - targets[a]) * market.prices[a]
                for a in targets
                if targets[a] < before.quantity(a) and a not in traded
            ),
            Decimal(0),
        )
        kept = sum(
            (
                unit(market.precision(leg.asset)) * market.prices[leg.asset]
                for leg in legs
                if leg.side is Side.SELL
            ),
            Decimal(0),
        )
        fiat = unit(market.fiat_precision)
        assets = len(set(allocations.assets) | set(before.held_assets))
        shortfall = fiat * (assets + 1) + kept + withheld
        slack = {}
        for asset in allocations.assets:
            price = market.prices[asset]
            minimum = market.min_notional(asset)
            step = unit(market.precision(asset))
            slack[asset] = Slack(
                above=step + (minimum + fiat) / price,
                below=2 * step + (shortfall + 2 * fiat + minimum) / price,
            )
        return slack
