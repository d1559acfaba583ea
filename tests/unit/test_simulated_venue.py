"""The simulated venue: reproducible prices, firm expiring quotes, idempotent fills, failures."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from domain.statuses import Side
from domain.venue import (
    OrderRejectedError,
    QuoteExpiredError,
    QuoteUnavailableError,
)
from infra.settings import Settings, SettingsError, load_settings
from infra.venue import build_venue
from infra.venue.config import DEFAULT_BASE_PRICES, VenueConfig
from infra.venue.simulated import VENUE_NAMESPACE, SimulatedVenue

if TYPE_CHECKING:
    from domain.venue import ExecutionVenue, QuoteProvider

ASSETS = list(DEFAULT_BASE_PRICES)
START = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def venue_with(clock: Clock, **overrides: object) -> SimulatedVenue:
    return build_venue(replace(VenueConfig(seed=7), **overrides), now=clock)  # type: ignore[arg-type]


async def walk(
    venue: SimulatedVenue, ticks: int, currency: str = "USD"
) -> list[dict[str, Decimal]]:
    path = []
    for _ in range(ticks):
        path.append(dict(await venue.indicative(currency, ASSETS)))
        venue.tick()
    return path


# --- prices -----------------------------------------------------------------------------------


async def test_same_seed_gives_the_same_prices_and_quote_ids(clock: Clock) -> None:
    first, second = venue_with(clock), venue_with(clock)
    assert await walk(first, 20) == await walk(second, 20)
    quotes = [await v.firm_quote("USD", "BTC", Side.BUY, Decimal(1)) for v in (first, second)]
    assert quotes[0] == quotes[1]


async def test_different_seeds_give_different_prices(clock: Clock) -> None:
    first, second = venue_with(clock, seed=1), venue_with(clock, seed=2)
    first.tick(5)
    second.tick(5)
    assert await first.indicative("USD", ASSETS) != await second.indicative("USD", ASSETS)
    one = await first.firm_quote("USD", "BTC", Side.BUY, Decimal(1))
    two = await second.firm_quote("USD", "BTC", Side.BUY, Decimal(1))
    assert one.quote_id != two.quote_id


async def test_an_asset_path_does_not_depend_on_what_else_was_asked(clock: Clock) -> None:
    alone, crowded = venue_with(clock), venue_with(clock)
    for _ in range(10):
        alone.tick()
        crowded.tick()
        await crowded.indicative("USD", ["ETH", "SOL"])
    assert (await alone.indicative("USD", ["BTC"]))["BTC"] == (
        await crowded.indicative("USD", ["BTC", "ETH"])
    )["BTC"]


async def test_prices_stay_positive_with_two_decimals(clock: Clock) -> None:
    venue = venue_with(clock, step_bps=2_000)
    for currency in ("USD", "EUR"):
        for prices in await walk(venue, 200, currency):
            assert set(prices) == set(ASSETS)
            for price in prices.values():
                assert price > 0
                assert price.as_tuple().exponent == -2


async def test_tick_moves_the_market(clock: Clock) -> None:
    venue = venue_with(clock)
    before = await venue.indicative("USD", ASSETS)
    venue.tick()
    assert venue.step == 1
    assert await venue.indicative("USD", ASSETS) != before


async def test_eur_is_usd_at_the_fixed_rate(clock: Clock) -> None:
    venue = venue_with(clock)
    usd = await venue.indicative("USD", ["BTC"])
    eur = await venue.indicative("EUR", ["BTC"])
    assert usd["BTC"] == Decimal("65000.00")
    assert eur["BTC"] == Decimal("59800.00")


async def test_unknown_assets_and_currencies_are_absent(clock: Clock) -> None:
    venue = venue_with(clock)
    assert set(await venue.indicative("USD", ["BTC", "DOGE"])) == {"BTC"}
    assert await venue.indicative("JPY", ["BTC"]) == {}


async def test_firm_quote_for_unknown_asset_or_currency_is_unavailable(clock: Clock) -> None:
    venue = venue_with(clock)
    with pytest.raises(QuoteUnavailableError):
        await venue.firm_quote("USD", "DOGE", Side.BUY, Decimal(1))
    with pytest.raises(QuoteUnavailableError):
        await venue.firm_quote("JPY", "BTC", Side.BUY, Decimal(1))
    with pytest.raises(QuoteUnavailableError):
        await venue.firm_quote("USD", "BTC", Side.BUY, Decimal(-1))


async def test_a_zero_size_quote_is_a_firm_mid_price_for_internal_crossing(clock: Clock) -> None:
    venue = venue_with(clock, spread=Decimal("0.01"))
    mid = (await venue.indicative("USD", ["ETH"]))["ETH"]
    quote = await venue.firm_quote("USD", "ETH", Side.BUY, Decimal(0))
    assert (quote.price, quote.quantity) == (mid, Decimal(0))


# --- quotes -----------------------------------------------------------------------------------


async def test_buyers_pay_the_ask_and_sellers_get_the_bid(clock: Clock) -> None:
    venue = venue_with(clock, spread=Decimal("0.01"))
    mid = (await venue.indicative("USD", ["ETH"]))["ETH"]
    ask = await venue.firm_quote("USD", "ETH", Side.BUY, Decimal(2))
    bid = await venue.firm_quote("USD", "ETH", Side.SELL, Decimal(2))
    assert (ask.price, bid.price) == (mid + Decimal("16.00"), mid - Decimal("16.00"))
    assert (ask.side, bid.side, ask.quantity) == (Side.BUY, Side.SELL, Decimal(2))


async def test_rounding_never_gives_away_the_half_spread(clock: Clock) -> None:
    venue = venue_with(clock)
    mid = (await venue.indicative("USD", ["ADA"]))["ADA"]
    ask = await venue.firm_quote("USD", "ADA", Side.BUY, Decimal(100))
    bid = await venue.firm_quote("USD", "ADA", Side.SELL, Decimal(100))
    assert bid.price < mid < ask.price
    assert ask.price.as_tuple().exponent == bid.price.as_tuple().exponent == -2


async def test_zero_spread_quotes_the_mid(clock: Clock) -> None:
    venue = venue_with(clock, spread=Decimal(0))
    mid = (await venue.indicative("USD", ["SOL"]))["SOL"]
    for side in Side:
        assert (await venue.firm_quote("USD", "SOL", side, Decimal(1))).price == mid


async def test_quote_expires_after_its_ttl(clock: Clock) -> None:
    venue = venue_with(clock, quote_ttl=timedelta(seconds=3))
    quote = await venue.firm_quote("USD", "BTC", Side.BUY, Decimal(1))
    assert (quote.quoted_at, quote.expires_at) == (START, START + timedelta(seconds=3))
    clock.advance(seconds=3)
    with pytest.raises(QuoteExpiredError):
        await venue.place_block("order-1", quote, Decimal(1))


async def test_quote_ids_are_unique_per_call(clock: Clock) -> None:
    venue = venue_with(clock)
    ids = {(await venue.firm_quote("USD", "BTC", Side.BUY, Decimal(1))).quote_id for _ in "abc"}
    assert len(ids) == 3


# --- orders -----------------------------------------------------------------------------------


async def test_block_fills_at_the_quoted_price(clock: Clock) -> None:
    venue = venue_with(clock)
    quote = await venue.firm_quote("USD", "BTC", Side.SELL, Decimal("0.5"))
    venue.tick(10)
    clock.advance(seconds=9)
    fill = await venue.place_block("order-1", quote, Decimal("0.5"))
    assert (fill.price, fill.quantity, fill.side, fill.asset) == (
        quote.price,
        Decimal("0.5"),
        Side.SELL,
        "BTC",
    )
    assert fill.fill_id == str(uuid.uuid5(VENUE_NAMESPACE, "fill:order-1"))
    assert fill.filled_at == START + timedelta(seconds=9)


async def test_placing_the_same_order_again_returns_the_first_fill(clock: Clock) -> None:
    venue = venue_with(clock)
    quote = await venue.firm_quote("USD", "ETH", Side.BUY, Decimal(3))
    first = await venue.place_block("order-1", quote, Decimal(3))
    clock.advance(minutes=5)
    assert await venue.place_block("order-1", quote, Decimal(3)) == first
    other = await venue.firm_quote("USD", "ETH", Side.BUY, Decimal(3))
    assert (await venue.place_block("order-2", other, Decimal(3))).fill_id != first.fill_id


async def test_reusing_an_order_id_on_other_terms_is_rejected(clock: Clock) -> None:
    venue = venue_with(clock)
    quote = await venue.firm_quote("USD", "ETH", Side.BUY, Decimal(3))
    await venue.place_block("order-1", quote, Decimal(3))
    other = await venue.firm_quote("USD", "ETH", Side.BUY, Decimal(3))
    with pytest.raises(OrderRejectedError):
        await venue.place_block("order-1", other, Decimal(3))
    with pytest.raises(OrderRejectedError):
        await venue.place_block("order-1", quote, Decimal(2))


@pytest.mark.parametrize(
    ("quantity", "accepted"),
    [("10.5", True), ("10.50000001", False), ("0.00000001", True), ("0", False), ("-1", False)],
)
async def test_order_quantity_may_exceed_the_quote_only_by_the_tolerance(
    clock: Clock, quantity: str, accepted: bool
) -> None:
    venue = venue_with(clock)
    quote = await venue.firm_quote("USD", "SOL", Side.BUY, Decimal(10))
    if accepted:
        assert (await venue.place_block("order-1", quote, Decimal(quantity))).quantity == Decimal(
            quantity
        )
    else:
        with pytest.raises(OrderRejectedError):
            await venue.place_block("order-1", quote, Decimal(quantity))


async def test_a_quote_the_venue_never_gave_is_rejected(clock: Clock) -> None:
    venue = venue_with(clock)
    quote = await venue.firm_quote("USD", "BTC", Side.BUY, Decimal(1))
    forged = replace(quote, price=Decimal("1.00"))
    with pytest.raises(OrderRejectedError):
        await venue.place_block("order-1", forged, Decimal(1))


# --- injected failures ------------------------------------------------------------------------


async def test_failing_asset_has_an_indicative_price_but_no_firm_quote(clock: Clock) -> None:
    venue = venue_with(clock, fail_quotes=frozenset({"SOL"}))
    assert "SOL" in await venue.indicative("USD", ["SOL"])
    with pytest.raises(QuoteUnavailableError):
        await venue.firm_quote("USD", "SOL", Side.BUY, Decimal(1))
    await venue.firm_quote("USD", "BTC", Side.BUY, Decimal(1))


async def test_rejected_asset_orders_are_refused(clock: Clock) -> None:
    venue = venue_with(clock, reject_orders=frozenset({"eth"}))
    quote = await venue.firm_quote("USD", "ETH", Side.SELL, Decimal(1))
    with pytest.raises(OrderRejectedError):
        await venue.place_block("order-1", quote, Decimal(1))


async def test_latency_is_honoured_by_every_call(clock: Clock) -> None:
    venue = venue_with(clock, latency_ms=20)
    started = time.monotonic()
    await venue.indicative("USD", ["BTC"])
    quote = await venue.firm_quote("USD", "BTC", Side.BUY, Decimal(1))
    await venue.place_block("order-1", quote, Decimal(1))
    assert time.monotonic() - started >= 0.06


async def test_a_naive_clock_is_refused() -> None:
    venue = SimulatedVenue(VenueConfig(), now=lambda: datetime(2025, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        await venue.firm_quote("USD", "BTC", Side.BUY, Decimal(1))


def test_the_venue_implements_both_ports() -> None:
    venue = build_venue(VenueConfig())
    ports: tuple[QuoteProvider, ExecutionVenue] = (venue, venue)  # checked by mypy
    assert all(port is venue for port in ports)


# --- configuration ----------------------------------------------------------------------------


def _venue_settings(env: dict[str, str]) -> VenueConfig:
    return VenueConfig.from_section(Settings.model_validate(env).venue)


def test_config_defaults_when_the_environment_is_empty() -> None:
    config = _venue_settings({})
    assert config == VenueConfig()
    assert (config.spread, config.latency_ms, config.quote_ttl) == (
        Decimal("0.001"),
        0,
        timedelta(seconds=10),
    )


def test_config_reads_every_variable() -> None:
    config = _venue_settings(
        {
            "STRATEGIES_VENUE_SEED": "42",
            "STRATEGIES_VENUE_SPREAD": "0.002",
            "STRATEGIES_VENUE_LATENCY_MS": "15",
            "STRATEGIES_VENUE_QUOTE_TTL_S": "2.5",
            "STRATEGIES_VENUE_FAIL_QUOTES": " sol, ADA ,",
            "STRATEGIES_VENUE_REJECT_ORDERS": "ETH",
        }
    )
    assert config.seed == 42
    assert config.spread == Decimal("0.002")
    assert config.latency_ms == 15
    assert config.quote_ttl == timedelta(seconds=2, milliseconds=500)
    assert config.fail_quotes == {"SOL", "ADA"}
    assert config.reject_orders == {"ETH"}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STRATEGIES_VENUE_SEED", "abc"),
        ("STRATEGIES_VENUE_SEED", "1.5"),
        ("STRATEGIES_VENUE_SPREAD", "wide"),
        ("STRATEGIES_VENUE_SPREAD", "-0.001"),
        ("STRATEGIES_VENUE_SPREAD", "1"),
        ("STRATEGIES_VENUE_SPREAD", "NaN"),
        ("STRATEGIES_VENUE_LATENCY_MS", "-1"),
        ("STRATEGIES_VENUE_LATENCY_MS", "fast"),
        ("STRATEGIES_VENUE_QUOTE_TTL_S", "0"),
        ("STRATEGIES_VENUE_QUOTE_TTL_S", "Infinity"),
        ("STRATEGIES_VENUE_QUOTE_TTL_S", "0.0000001"),
        ("STRATEGIES_VENUE_FAIL_QUOTES", "BTC;ETH"),
        ("STRATEGIES_VENUE_REJECT_ORDERS", "BTC/USD"),
    ],
)
def test_config_names_the_variable_with_a_bad_value(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"\\n  {name}: .*") as refused:
        load_settings()
    assert len(str(refused.value).splitlines()) == 2  # the heading and one line


@pytest.mark.parametrize(
    "overrides",
    [
        {"spread": Decimal("1.5")},
        {"latency_ms": -5},
        {"quote_ttl": timedelta(0)},
        {"quantity_tolerance": Decimal(-1)},
        {"step_bps": 10_000},
        {"base_prices": {"BTC": Decimal(0)}},
        {"currency_rates": {"EUR": Decimal(-1)}},
    ],
)
def test_config_refuses_impossible_values(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        VenueConfig(**overrides)  # type: ignore[arg-type]


async def test_a_quote_from_one_worker_process_is_honoured_by_another(clock: Clock) -> None:
    """Pricing and block placement may run in different worker processes, each with its own
    simulator: a quote must verify anywhere with the same seed, and only unaltered."""
    pricing, execution = venue_with(clock), venue_with(clock)
    quote = await pricing.firm_quote("USD", "BTC", Side.BUY, Decimal("0.5"))
    fill = await execution.place_block("order-x", quote, Decimal("0.5"))
    assert (fill.price, fill.quantity) == (quote.price, Decimal("0.5"))
    better = replace(quote, price=quote.price - 1)
    with pytest.raises(OrderRejectedError, match="unknown"):
        await execution.place_block("order-y", better, Decimal("0.5"))
    with pytest.raises(OrderRejectedError, match="unknown"):
        await venue_with(clock, seed=8).place_block("order-z", quote, Decimal("0.5"))
    with pytest.raises(OrderRejectedError, match="unknown"):
        await execution.place_block("order-w", replace(quote, quote_id="not-a-uuid"), Decimal(1))
