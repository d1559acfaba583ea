"""How the venue is configured, and the one place that chooses which venue to build.

The simulated venue is the default (and, for now, the only) implementation. A real adapter
will be selected here by configuration, so callers only ever see the two ports.

`from_env` reads the `STRATEGIES_VENUE_*` variables; as in `infra/settings.py`, an empty value
means "unset". Every bad value is a ValueError that names its variable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation

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
    def from_env(cls, env: Mapping[str, str]) -> VenueConfig:
        default = cls()
        spread = _decimal(env, "STRATEGIES_VENUE_SPREAD", lambda v: 0 <= v < 1, "in [0, 1)")
        ttl = _decimal(env, "STRATEGIES_VENUE_QUOTE_TTL_S", lambda v: v > 0, "positive")
        return cls(
            seed=_integer(env, "STRATEGIES_VENUE_SEED", default.seed, None),
            spread=default.spread if spread is None else spread,
            latency_ms=_integer(env, "STRATEGIES_VENUE_LATENCY_MS", default.latency_ms, 0),
            quote_ttl=default.quote_ttl if ttl is None else _seconds(ttl),
            fail_quotes=_assets(env, "STRATEGIES_VENUE_FAIL_QUOTES"),
            reject_orders=_assets(env, "STRATEGIES_VENUE_REJECT_ORDERS"),
        )


def _get(env: Mapping[str, str], name: str) -> str:
    return env.get(name, "").strip()


def _integer(env: Mapping[str, str], name: str, default: int, minimum: int | None) -> int:
    raw = _get(env, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _decimal(
    env: Mapping[str, str], name: str, valid: Callable[[Decimal], bool], expected: str
) -> Decimal | None:
    raw = _get(env, name)
    if not raw:
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal number, got {raw!r}") from None
    if not (value.is_finite() and valid(value)):
        raise ValueError(f"{name} must be {expected}, got {raw!r}")
    return value


def _seconds(value: Decimal) -> timedelta:
    microseconds = int(value.scaleb(6))
    if microseconds <= 0:
        raise ValueError(f"STRATEGIES_VENUE_QUOTE_TTL_S is below one microsecond: {value}")
    return timedelta(microseconds=microseconds)


def _assets(env: Mapping[str, str], name: str) -> frozenset[str]:
    symbols = [part.strip().upper() for part in _get(env, name).split(",")]
    bad = [symbol for symbol in symbols if symbol and not symbol.isalnum()]
    if bad:
        raise ValueError(f"{name} must be comma-separated asset symbols; bad: {', '.join(bad)}")
    return frozenset(symbol for symbol in symbols if symbol)
