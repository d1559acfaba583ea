from __future__ import annotations

from decimal import Decimal

from domain.allocations import Allocation, Allocations
from domain.calculators import (
    Market,
    buy_legs,
    current_weights,
    drift,
    liquidation_legs,
    partial_sell_plan,
    rebalance_legs,
    split_fiat,
)
from domain.catalogue import DEFAULT_INSTRUMENTS, Instrument, InstrumentCatalogue
from domain.legs import Holdings, Leg
from domain.statuses import Reason, Side

D = Decimal
MARKET = Market(
    "USD",
    2,
    InstrumentCatalogue.of(DEFAULT_INSTRUMENTS),
    {"BTC": D("60000.00"), "ETH": D("3000.00"), "SOL": D("150.00")},
)
BLUE_CHIP = Allocations(
    (Allocation("BTC", D("0.5")), Allocation("ETH", D("0.3")), Allocation("SOL", D("0.2")))
)


def test_enrollment_buys_amount_times_weight_of_each_asset() -> None:
    legs = buy_legs(D("1000.00"), BLUE_CHIP, MARKET)
    assert legs == (
        Leg(Side.BUY, "BTC", D("0.00833333"), D("500.00")),
        Leg(Side.BUY, "ETH", D("0.10000000"), D("300.00")),
        Leg(Side.BUY, "SOL", D("1.33333333"), D("200.00")),
    )


def test_buy_cost_rounds_up_and_never_exceeds_the_budget() -> None:
    market = Market("USD", 2, MARKET.catalogue, {"BTC": D("60000.07")})
    (leg,) = buy_legs(D("100.00"), Allocations((Allocation("BTC", D(1)),)), market)
    assert leg.quantity == D("0.00166666")
    assert leg.quantity * D("60000.07") <= leg.notional <= D("100.00")


def test_legs_below_the_minimum_notional_are_dropped_as_dust() -> None:
    legs = buy_legs(D("4.00"), BLUE_CHIP, MARKET)  # SOL gets 0.80 < 1.00
    assert [leg.asset for leg in legs] == ["BTC", "ETH"]


BTC_ETH = Allocations((Allocation("BTC", D("0.5")), Allocation("ETH", D("0.5"))))
BTC_ONLY = Allocations((Allocation("BTC", D(1)),))


def test_fiat_splits_sum_to_the_amount_and_give_leftover_units_to_the_biggest_losers() -> None:
    thirds = Allocations(
        (
            Allocation("BTC", D("0.333")),
            Allocation("ETH", D("0.333")),
            Allocation("SOL", D("0.334")),
        )
    )
    assert split_fiat(D("0.10"), thirds, 2) == {
        "BTC": D("0.03"),
        "ETH": D("0.03"),
        "SOL": D("0.04"),
    }
    assert split_fiat(D("1.00"), BLUE_CHIP, 2) == {
        "BTC": D("0.50"),
        "ETH": D("0.30"),
        "SOL": D("0.20"),
    }
    halves = split_fiat(D("0.03"), BTC_ETH, 2)
    assert halves == {"BTC": D("0.02"), "ETH": D("0.01")} and sum(halves.values()) == D("0.03")


def test_partial_sell_pays_exactly_the_amount_and_keeps_the_round_up_as_cash() -> None:
    holdings = Holdings({"BTC": D("0.01"), "ETH": D("0.1")})
    plan = partial_sell_plan(D("300.00"), BTC_ETH, holdings, MARKET)
    assert plan.refusal is None
    assert plan.legs == (
        Leg(Side.SELL, "BTC", D("0.00250000"), D("150.00")),
        Leg(Side.SELL, "ETH", D("0.05000000"), D("150.00")),
    )


def test_partial_sell_on_a_coarse_grid_sells_up_to_the_next_unit_but_pays_the_amount() -> None:
    """The issue's case: price 30, precision 0, 50 asked: 2 units sold for 60, the Trader
    receives 50 and keeps 10 as cash (it used to be paid 60)."""
    catalogue = InstrumentCatalogue.of([Instrument("BTC", "USD", 0, D("1.00"))])
    market = Market("USD", 2, catalogue, {"BTC": D("30")})
    plan = partial_sell_plan(D("50.00"), BTC_ONLY, Holdings({"BTC": D("5")}), market)
    assert plan.legs == (Leg(Side.SELL, "BTC", D("2"), D("60.00")),)
    after = Holdings({"BTC": D("5")}).after(plan.legs, D(0), D("50.00"))
    assert (after.positions, after.cash) == ({"BTC": D("3")}, D("10.00"))


def test_partial_sell_not_covered_is_refused_whole_never_trimmed() -> None:
    """The issue's case: 1 unit, 95 asked: at 100 it covers; locked at 90 it does not, and the
    Trader is refused rather than sold out for 90."""
    catalogue = InstrumentCatalogue.of([Instrument("BTC", "USD", 0, D("1.00"))])
    holdings = Holdings({"BTC": D("1")})
    at = lambda price: Market("USD", 2, catalogue, {"BTC": D(price)})  # noqa: E731
    assert partial_sell_plan(D("95.00"), BTC_ONLY, holdings, at("100")).legs
    refused = partial_sell_plan(D("95.00"), BTC_ONLY, holdings, at("90"))
    assert (refused.legs, refused.refusal) == ((), Reason.INSUFFICIENT_BALANCE)


def test_partial_sell_of_everything_held_is_allowed_with_no_buffer() -> None:
    """The issue's case: 1 unit at 100, 99 asked: covered (a hidden 2% buffer refused it)."""
    catalogue = InstrumentCatalogue.of([Instrument("BTC", "USD", 0, D("1.00"))])
    market = Market("USD", 2, catalogue, {"BTC": D("100")})
    plan = partial_sell_plan(D("99.00"), BTC_ONLY, Holdings({"BTC": D("1")}), market)
    assert plan.legs == (Leg(Side.SELL, "BTC", D("1"), D("100.00")),)


def test_partial_sell_with_a_dust_leg_is_refused_and_all_dust_is_skipped() -> None:
    holdings = Holdings({"BTC": D("1"), "ETH": D("1"), "SOL": D("10")})
    some = partial_sell_plan(D("4.00"), BLUE_CHIP, holdings, MARKET)  # SOL's 0.80 < 1.00
    assert (some.refusal, some.skip, some.legs) == (Reason.DUST, False, ())
    every = partial_sell_plan(D("1.50"), BLUE_CHIP, holdings, MARKET)
    assert (every.refusal, every.skip) == (Reason.DUST, True)


def test_liquidation_sells_everything_including_dust() -> None:
    holdings = Holdings({"BTC": D("0.00000001"), "SOL": D("2")}, D("0.37"))
    legs = liquidation_legs(holdings, MARKET)
    assert [(leg.asset, leg.quantity) for leg in legs] == [
        ("BTC", D("0.00000001")),
        ("SOL", D("2")),
    ]


def test_rebalance_sells_dropped_assets_and_buys_new_weights_from_proceeds() -> None:
    holdings = Holdings({"BTC": D("0.01"), "SOL": D("4")}, D("0.50"))  # 600 + 600 + 0.50
    target = Allocations((Allocation("BTC", D("0.5")), Allocation("ETH", D("0.5"))))
    legs = rebalance_legs(target, holdings, MARKET)
    by_asset = {leg.asset: leg for leg in legs}
    assert by_asset["SOL"] == Leg(Side.SELL, "SOL", D("4"), D("600.00"))
    assert by_asset["ETH"].side is Side.BUY
    assert by_asset["ETH"].quantity == D("0.20008333")
    assert "BTC" not in by_asset  # 600.25 target vs 600 held: a 0.25 leg is dust
    after = holdings.after(legs, D(0), D(0))
    assert after.cash >= 0
    assert after.positions.get("SOL") is None


def test_rebalance_sells_round_down_and_a_shortfall_is_shared_by_every_buy() -> None:
    """Selling down to the grid leaves a little less fiat than the buys want: each buy gives
    up its share, so the last asset in the list is not the one left short every time."""
    catalogue = InstrumentCatalogue.of(
        [
            Instrument("BTC", "USD", 0, D("0.01")),
            Instrument("ETH", "USD", 8, D("0.01")),
            Instrument("SOL", "USD", 8, D("0.01")),
        ]
    )
    market = Market("USD", 2, catalogue, {"BTC": D("100"), "ETH": D("1"), "SOL": D("1")})
    holdings = Holdings({"BTC": D("10")})  # 1000: BTC 25% is 2.5 units, ETH and SOL 375 each
    target = Allocations(
        (Allocation("BTC", D("0.25")), Allocation("ETH", D("0.375")), Allocation("SOL", D("0.375")))
    )
    legs = {leg.asset: leg for leg in rebalance_legs(target, holdings, market)}
    assert legs["BTC"] == Leg(Side.SELL, "BTC", D("7"), D("700.00"))  # 7 of 7.5, not 8
    # 700 for 750 wanted: each buy gets 350, where greedy funding gave ETH 375 and SOL 325
    assert legs["ETH"].quantity == legs["SOL"].quantity == D("350")
    assert sum(leg.notional for leg in legs.values() if leg.side is Side.BUY) <= D("700.00")


def test_rebalance_of_an_empty_trader_has_no_legs() -> None:
    assert rebalance_legs(BLUE_CHIP, Holdings(), MARKET) == ()


def test_drift_measures_the_largest_gap_to_target() -> None:
    holdings = Holdings({"BTC": D("0.01"), "ETH": D("0.2")})  # 600 / 600
    weights = current_weights(holdings, MARKET)
    assert weights == {"BTC": D("0.5"), "ETH": D("0.5")}
    assert drift(holdings, BLUE_CHIP, MARKET) == D("0.2")
    assert current_weights(Holdings(), MARKET) == {}
    assert drift(Holdings(), BLUE_CHIP, MARKET) == D("0.5")
