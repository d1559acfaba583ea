"""Reference data: the fiat currencies we account in and the instruments we may trade.

An instrument is an asset quoted in one fiat currency ("BTC/USD"), with the precision its
quantities are kept at and the minimum notional a leg must reach to be worth trading. Only
`enabled` instruments can be allocated to; a `halted` instrument is listed but not tradable
right now (Traders needing it are excluded as `instrument_ineligible`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from domain.errors import CurrencyUnsupportedError, FieldError, InstrumentNotFoundError

#: Minor-unit decimals of the fiat currencies a Strategy may be quoted in (ISO 4217).
FIAT_PRECISION: Mapping[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CAD": 2,
    "AUD": 2,
    "CHF": 2,
    "SGD": 2,
    "BRL": 2,
    "JPY": 0,
}


def currency_problem(raw: object) -> str | None:
    """Why `raw` is not a currency the engine accounts in (None when it is one)."""
    if isinstance(raw, str) and raw in FIAT_PRECISION:
        return None
    return f"must be one of {', '.join(sorted(FIAT_PRECISION))}"


def fiat_precision(currency: str) -> int:
    try:
        return FIAT_PRECISION[currency]
    except KeyError:
        supported = ", ".join(sorted(FIAT_PRECISION))
        raise CurrencyUnsupportedError(
            f"quoted_currency {currency!r} is not supported (supported: {supported})",
            errors=(FieldError("quoted_currency", f"must be one of {supported}"),),
        ) from None


class InstrumentStatus(StrEnum):
    ENABLED = "enabled"
    HALTED = "halted"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Instrument:
    asset: str
    quoted_currency: str
    precision: int
    min_notional: Decimal
    status: InstrumentStatus = InstrumentStatus.ENABLED

    @property
    def symbol(self) -> str:
        return f"{self.asset}/{self.quoted_currency}"

    @property
    def tradable(self) -> bool:
        return self.status is InstrumentStatus.ENABLED

    def as_dict(self) -> dict[str, str | int]:
        return {
            "asset": self.asset,
            "quoted_currency": self.quoted_currency,
            "precision": self.precision,
            "min_notional": str(self.min_notional),
            "status": self.status.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str | int]) -> Instrument:
        return cls(
            asset=str(data["asset"]),
            quoted_currency=str(data["quoted_currency"]),
            precision=int(data["precision"]),
            min_notional=Decimal(str(data["min_notional"])),
            status=InstrumentStatus(str(data["status"])),
        )


@dataclass(frozen=True)
class InstrumentCatalogue:
    """An immutable view of every listed instrument, keyed by (asset, quoted currency)."""

    instruments: Mapping[tuple[str, str], Instrument] = field(default_factory=dict)

    @classmethod
    def of(cls, instruments: Iterable[Instrument]) -> InstrumentCatalogue:
        return cls({(i.asset, i.quoted_currency): i for i in instruments})

    def find(self, asset: str, quoted_currency: str) -> Instrument | None:
        return self.instruments.get((asset, quoted_currency))

    def get(self, asset: str, quoted_currency: str) -> Instrument:
        instrument = self.find(asset, quoted_currency)
        if instrument is None:
            raise InstrumentNotFoundError(f"{asset}/{quoted_currency} is not a listed instrument")
        return instrument

    def precision(self, asset: str, quoted_currency: str) -> int:
        return self.get(asset, quoted_currency).precision

    def tradable_assets(self, quoted_currency: str) -> list[str]:
        """The assets to ask indicative prices for before a credit check (or a preview) in
        `quoted_currency`: every tradable one, since a rebalance or a liquidation also
        sells what Traders hold beyond the allocations."""
        return [
            asset
            for (asset, currency), instrument in self.instruments.items()
            if currency == quoted_currency and instrument.tradable
        ]


#: The default listing used by the demo and a fresh installation (replaceable by administration).
DEFAULT_INSTRUMENTS: tuple[Instrument, ...] = tuple(
    Instrument(asset, currency, 8, Decimal("1.00"))
    for currency in ("USD", "EUR")
    for asset in ("BTC", "ETH", "SOL", "ADA", "AVAX", "LINK", "DOT", "LTC")
)
