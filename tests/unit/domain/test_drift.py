"""Drift arithmetic (`domain.drift`): a Trader's drift, value out of line and band, and what
they add up to; the band decision is the scheduler's own."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from domain.allocations import Allocation, Allocations
from domain.drift import SUMMARY_BANDS, DriftSummary, Targets, shown_drift, trader_drift
from domain.legs import Holdings
from domain.policy import DriftBand, Policy
from domain.policy_run import TraderState, select_for_run

D = Decimal
HALVES = Allocations((Allocation("BTC", D("0.5")), Allocation("ETH", D("0.5"))))
PRICES = {"BTC": D("60"), "ETH": D("40")}
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_a_trader_sixty_forty_on_a_fifty_fifty_model_is_ten_points_off() -> None:
    drift = trader_drift(Holdings({"BTC": D(1), "ETH": D(1)}), PRICES, Targets.of(HALVES))
    assert drift is not None
    assert drift.value == 100 and drift.drift == D("0.1") and drift.out_of_line == 10
    assert drift.at_least(D("0.1")) and not drift.at_least(D("0.1000001"))
    assert drift.beyond(D("0.05")) and not drift.beyond(D("0.1"))  # on the edge is inside


def test_on_the_band_edge_is_inside_just_past_it_is_outside() -> None:
    holdings = Holdings({"BTC": D(1), "ETH": D(1)})
    edge = trader_drift(holdings, PRICES, Targets.of(HALVES), DriftBand(absolute=D("0.1")))
    past = trader_drift(holdings, PRICES, Targets.of(HALVES), DriftBand(absolute=D("0.0999")))
    assert edge is not None and not edge.outside
    assert past is not None and past.outside
    # relative: ETH at 0.4 is 20% of its 0.5 target off it.
    rel_edge = trader_drift(holdings, PRICES, Targets.of(HALVES), DriftBand(relative=D("0.2")))
    assert rel_edge is not None and not rel_edge.outside


def test_the_cash_buffer_is_the_cash_target() -> None:
    # 45/45 in assets and 10 in cash is exactly on a 10% buffer's targets.
    holdings = Holdings({"BTC": D("0.75"), "ETH": D("1.125")}, cash=D(10))
    drift = trader_drift(holdings, PRICES, Targets.of(HALVES, D("0.10")))
    assert drift is not None and drift.drift == 0 and drift.out_of_line == 0
    # The same Trader against no buffer: 5 points short in each asset, 10 too much cash.
    unbuffered = trader_drift(holdings, PRICES, Targets.of(HALVES))
    assert unbuffered is not None
    assert unbuffered.drift == D("0.05") and unbuffered.out_of_line == 10


def test_only_cash_is_all_out_of_line_and_outside_any_band() -> None:
    drift = trader_drift(Holdings({}, cash=D(50)), PRICES, Targets.of(HALVES), DriftBand(D("0.9")))
    assert drift is not None
    assert drift.drift == D("0.5") and drift.out_of_line == 50 and drift.outside


def test_a_held_asset_without_a_price_is_not_valued_and_an_asset_off_the_model_counts() -> None:
    assert trader_drift(Holdings({"SOL": D(1)}), PRICES, Targets.of(HALVES)) is None
    prices = {**PRICES, "SOL": D(100)}
    drift = trader_drift(
        Holdings({"BTC": D(1), "ETH": D(1), "SOL": D(1)}), prices, Targets.of(HALVES)
    )
    assert drift is not None and drift.drift == D("0.5") * 1  # SOL: half the value, target 0
    assert drift.out_of_line == 100


def test_a_summary_counts_traders_bands_and_value_out_of_line() -> None:
    summary = DriftSummary()
    targets = Targets.of(HALVES)
    band = DriftBand(absolute=D("0.05"))
    for holdings in (
        Holdings({"BTC": D(1), "ETH": D(1)}),  # 0.1 off, 10 out of line
        Holdings({"BTC": D("0.5"), "ETH": D("0.75")}),  # on target
        Holdings({"BTC": D("0.8"), "ETH": D("1.3")}),  # 48/52: 0.02 off, 2 out of line
        Holdings({"SOL": D(1)}),  # unpriced
        Holdings({}),  # nothing
    ):
        summary.add(trader_drift(holdings, PRICES, targets, band))
    assert (summary.traders, summary.unpriced, summary.empty, summary.outside) == (3, 1, 1, 1)
    assert shown_drift(summary.largest_drift) == "0.100000"
    assert summary.value_out_of_line(2) == D("12.00")
    # 0.02 is on the 0.02 band's edge: inside it.
    assert summary.counts_beyond() == {D("0.01"): 2, D("0.02"): 1, D("0.05"): 1, D("0.10"): 0}


def test_a_drift_is_shown_with_six_places_rounded_down() -> None:
    assert shown_drift(D(1) / D(3)) == "0.333333"
    assert shown_drift(D("0.0499999999")) == "0.049999"
    assert shown_drift(D(0)) == "0.000000"


# -- properties ---------------------------------------------------------------------------
ASSETS = ("BTC", "ETH", "SOL")
quantities = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False)
prices = st.decimals(min_value=D("0.01"), max_value=100_000, places=2, allow_nan=False)
shares = st.decimals(min_value=D("0.01"), max_value=D("0.10"), places=2, allow_nan=False)


@st.composite
def models(draw: st.DrawFn) -> Allocations:
    first = draw(st.decimals(min_value=D("0.01"), max_value=D("0.99"), places=2))
    second = draw(st.decimals(min_value=D("0"), max_value=1 - first, places=2))
    weights = [first, second, 1 - first - second]
    return Allocations(tuple(Allocation(a, w) for a, w in zip(ASSETS, weights, strict=True) if w))


@st.composite
def traders(draw: st.DrawFn) -> tuple[Holdings, dict[str, Decimal]]:
    positions = {a: draw(quantities) for a in draw(st.sets(st.sampled_from(ASSETS)))}
    cash = draw(st.decimals(min_value=0, max_value=1000, places=2))
    return Holdings({a: q for a, q in positions.items() if q}, cash), {
        a: draw(prices) for a in ASSETS
    }


@given(traders(), models(), st.decimals(min_value=0, max_value=D("0.2"), places=3))
def test_drift_is_never_negative_and_out_of_line_never_exceeds_the_value(
    trader: tuple[Holdings, dict[str, Decimal]], model: Allocations, buffer: Decimal
) -> None:
    holdings, at = trader
    drift = trader_drift(holdings, at, Targets.of(model, buffer))
    assert drift is not None
    assert drift.drift >= 0 and 0 <= drift.out_of_line <= drift.value
    assert drift.drift <= 1


@given(models(), st.decimals(min_value=1, max_value=100_000, places=2), st.data())
def test_a_trader_exactly_on_its_targets_has_no_drift(
    model: Allocations, value: Decimal, data: st.DataObject
) -> None:
    # Prices that divide a decimal exactly, so the quantities on target are exact.
    at = {
        a: data.draw(st.sampled_from([D("0.5"), D(2), D(8), D(25), D(64), D(1000)])) for a in ASSETS
    }
    holdings = Holdings({a.asset: a.weight * value / at[a.asset] for a in model})
    drift = trader_drift(holdings, at, Targets.of(model))
    assert drift is not None and drift.value == value
    assert drift.drift == 0 and drift.out_of_line == 0 and not drift.beyond(D(0))


@given(st.lists(traders(), min_size=1, max_size=8), models(), shares, shares)
def test_a_wider_band_never_counts_more_traders_outside(
    many: list[tuple[Holdings, dict[str, Decimal]]], model: Allocations, a: Decimal, b: Decimal
) -> None:
    narrow, wide = sorted((a, b))
    targets = Targets.of(model)
    counts = []
    for width in (narrow, wide):
        summary = DriftSummary(bands=(width,))
        summary.add_all(trader_drift(h, p, targets, DriftBand(absolute=width)) for h, p in many)
        counts.append((summary.outside, summary.counts_beyond()[width]))
    assert counts[1][0] <= counts[0][0] and counts[1][1] <= counts[0][1]
    assert counts[0][0] == counts[0][1]  # an absolute band alone: outside = beyond it


@given(
    traders(),
    models(),
    st.one_of(st.none(), shares),
    st.one_of(st.none(), st.decimals(min_value=D("0.05"), max_value=1, places=2)),
    st.decimals(min_value=0, max_value=D("0.2"), places=2),
)
def test_outside_is_the_schedulers_own_decision(
    trader: tuple[Holdings, dict[str, Decimal]],
    model: Allocations,
    absolute: Decimal | None,
    relative: Decimal | None,
    buffer: Decimal,
) -> None:
    holdings, at = trader
    band = DriftBand(absolute, relative) if absolute or relative else DriftBand(D("0.05"))
    policy = Policy(drift_band=band, cash_buffer=buffer)
    picked = select_for_run([TraderState("P1", holdings)], model, policy, at, NOW)
    drift = trader_drift(holdings, at, Targets.of(model, buffer), band)
    assert drift is not None
    assert drift.outside == (picked.participants == ("P1",))


@given(traders(), models(), st.decimals(min_value=0, max_value=1, places=4))
def test_at_least_agrees_with_the_drift_it_shows(
    trader: tuple[Holdings, dict[str, Decimal]], model: Allocations, threshold: Decimal
) -> None:
    holdings, at = trader
    drift = trader_drift(holdings, at, Targets.of(model))
    assert drift is not None
    if drift.value > 0:
        assert drift.at_least(threshold) == (drift.drift >= threshold)
        assert drift.at_least(threshold) == (D(shown_drift(drift.drift)) >= threshold)


def test_the_summary_bands_are_the_documented_ones() -> None:
    assert [str(b) for b in SUMMARY_BANDS] == ["0.01", "0.02", "0.05", "0.10"]
