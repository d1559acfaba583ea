"""How the venue is configured, and the one place that chooses which venue to build.

The simulated venue is the default (and, for now, the only) implementation. A real adapter
will be selected here by configuration, so callers only ever see the two ports.

The `STRATEGIES_VENUE_*` variables are read and checked with every other setting
(`infra.settings_venue`); `from_section` turns them into a configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.settings_venue import VenueSection

#: Where the simulated market starts, in USD (two decimals, like every price we report).
DEFAULT_BASE_PRICES: Mapping[str, Decimal] = {
    "BTC": Decimal("65000.00"),
    "ETH": Decimal("3200.00"),
    "SOL": Decimal("150.00"),
    "ADA": Decimal("0.45"),
    "AVAX": Decimal("35.00"),
    "LINK": Decimal("15.00"),
    "DOT": Decimal("7.00"),
    "LTC": Decimal("80.00"),
}

#: Units of each quoted currency per USD; a fixed rate keeps the simulation reproducible.
DEFAULT_CURRENCY_RATES: Mapping[str, Decimal] = {"USD": Decimal(1), "EUR": Decimal("0.92")}


@dataclass(frozen=True)
class VenueConfig:
    seed: int = 0
    #: Full bid/ask width as a fraction of the mid (0.001 = 10 bps); each side gets half.
    spread: Decimal = Decimal("0.001")
    latency_ms: int = 0
    quote_ttl: timedelta = timedelta(seconds=10)
    #: How far an order may exceed its quote's quantity (0.05 = 5 %) before it is rejected.
    quantity_tolerance: Decimal = Decimal("0.05")
    #: Largest move of one `tick()`, in basis points either way.
    step_bps: int = 50
    #: Assets whose firm quotes always fail (their indicative prices are still published).
    fail_quotes: frozenset[str] = frozenset()
    #: Assets whose block orders are always rejected.
    reject_orders: frozenset[str] = frozenset()
    base_prices: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_BASE_PRICES))
    currency_rates: Mapping[str, Decimal] = field(
        default_factory=lambda: dict(DEFAULT_CURRENCY_RATES)
    )

    def __post_init__(self) -> None:
        if not (self.spread.is_finite() and 0 <= self.spread < 1):
            raise ValueError(f"spread must be at least 0 and below 1, got {self.spread}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {self.latency_ms}")
        if self.quote_ttl <= timedelta(0):
            raise ValueError(f"quote_ttl must be positive, got {self.quote_ttl}")
        if not (self.quantity_tolerance.is_finite() and self.quantity_tolerance >= 0):
            raise ValueError(
                f"quantity_tolerance must not be negative, got {self.quantity_tolerance}"
            )
        if not 0 <= self.step_bps < 10_000:
            raise ValueError(f"step_bps must be in [0, 10000), got {self.step_bps}")
        for name, prices in (
            ("base_prices", self.base_prices),
            ("currency_rates", self.currency_rates),
        ):
            bad = sorted(
                key for key, value in prices.items() if not (value.is_finite() and value > 0)
            )
            if bad:
                raise ValueError(f"{name} must all be positive; not so for {', '.join(bad)}")

    @classmethod
    def from_section(cls, section: VenueSection) -> VenueConfig:
        return cls(
            seed=section.seed,
            spread=section.spread,
            latency_ms=section.latency_ms,
            quote_ttl=section.quote_ttl,
            fail_quotes=section.fail_quotes,
            reject_orders=section.reject_orders,
        )
