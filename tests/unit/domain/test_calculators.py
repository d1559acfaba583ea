from __future__ import annotations

from decimal import Decimal

from domain.allocations import Allocation, Allocations
from domain.calculators import (
    Market,
    buy_legs,
    current_weights,
    drift,
    liquidation_legs,
    partial_sell_legs,
    rebalance_legs,
)
from domain.catalogue import DEFAULT_INSTRUMENTS, InstrumentCatalogue
from domain.legs import Holdings, Leg
from domain.statuses import Side

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


def test_partial_sell_reaches_the_requested_worth_but_never_sells_more_than_held() -> None:
    holdings = Holdings({"BTC": D("0.01"), "ETH": D("0.001")})
    legs = partial_sell_legs(
        D("300.00"),
        Allocations((Allocation("BTC", D("0.5")), Allocation("ETH", D("0.5")))),
        holdings,
        MARKET,
    )
    assert legs[0] == Leg(Side.SELL, "BTC", D("0.00250000"), D("150.00"))
    assert legs[1] == Leg(Side.SELL, "ETH", D("0.001"), D("3.00"))


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


def test_rebalance_of_an_empty_trader_has_no_legs() -> None:
    assert rebalance_legs(BLUE_CHIP, Holdings(), MARKET) == ()


def test_drift_measures_the_largest_gap_to_target() -> None:
    holdings = Holdings({"BTC": D("0.01"), "ETH": D("0.2")})  # 600 / 600
    weights = current_weights(holdings, MARKET)
    assert weights == {"BTC": D("0.5"), "ETH": D("0.5")}
    assert drift(holdings, BLUE_CHIP, MARKET) == D("0.2")
    assert current_weights(Holdings(), MARKET) == {}
    assert drift(Holdings(), BLUE_CHIP, MARKET) == D("0.5")
