"""The settings of the simulated venue (`STRATEGIES_VENUE_*`), mixed into
`infra.settings.Settings` so that a bad value is reported with the others, one line per
variable, before any process starts (`infra.venue.config.VenueConfig.from_section` reads
the section).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel, Field, field_validator


@dataclass(frozen=True)
class VenueSection:
    seed: int
    spread: Decimal
    latency_ms: int
    quote_ttl: timedelta
    fail_quotes: frozenset[str]
    reject_orders: frozenset[str]


class VenueSettings(BaseModel):
    """Fields only; `Settings` reads them from the environment with the rest."""

    venue_seed: int = Field(default=0, validation_alias="STRATEGIES_VENUE_SEED")
    #: Full bid/ask width as a fraction of the mid (0.001 = 10 bps).
    venue_spread: Decimal = Field(
        default=Decimal("0.001"), ge=0, lt=1, validation_alias="STRATEGIES_VENUE_SPREAD"
    )
    venue_latency_ms: int = Field(default=0, ge=0, validation_alias="STRATEGIES_VENUE_LATENCY_MS")
    # At least a microsecond: what a timedelta can hold.
    venue_quote_ttl_s: Decimal = Field(
        default=Decimal(10), ge=Decimal("0.000001"), validation_alias="STRATEGIES_VENUE_QUOTE_TTL_S"
    )
    #: Comma-separated assets whose firm quotes always fail (a test switch).
    venue_fail_quotes: str = Field(default="", validation_alias="STRATEGIES_VENUE_FAIL_QUOTES")
    #: Comma-separated assets whose block orders are always rejected (a test switch).
    venue_reject_orders: str = Field(default="", validation_alias="STRATEGIES_VENUE_REJECT_ORDERS")

    @field_validator("venue_fail_quotes", "venue_reject_orders")
    @classmethod
    def _asset_symbols(cls, value: str) -> str:
        bad = [symbol for symbol in _symbols(value) if not symbol.isalnum()]
        if bad:
            raise ValueError(f"must be comma-separated asset symbols; bad: {', '.join(bad)}")
        return value

    @property
    def venue(self) -> VenueSection:
        return VenueSection(
            seed=self.venue_seed,
            spread=self.venue_spread,
            latency_ms=self.venue_latency_ms,
            quote_ttl=timedelta(microseconds=int(self.venue_quote_ttl_s.scaleb(6))),
            fail_quotes=frozenset(_symbols(self.venue_fail_quotes)),
            reject_orders=frozenset(_symbols(self.venue_reject_orders)),
        )


def _symbols(value: str) -> list[str]:
    return [part.strip().upper() for part in value.split(",") if part.strip()]
