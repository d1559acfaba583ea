"""Legs: one asset-level buy or sell of one Trader, and the Trader's holdings they act on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from domain.statuses import Side


@dataclass(frozen=True)
class Leg:
    """A buy or sell of `quantity` of `asset` for `notional` fiat.

    For a buy, `notional` is what the Trader pays; for a sell, what it receives.
    """

    side: Side
    asset: str
    quantity: Decimal
    notional: Decimal

    def as_dict(self) -> dict[str, str]:
        return {
            "side": self.side.value,
            "underlying_currency": self.asset,
            "quantity": str(self.quantity),
            "notional": str(self.notional),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Leg:
        return cls(
            Side(data["side"]),
            data["underlying_currency"],
            Decimal(data["quantity"]),
            Decimal(data["notional"]),
        )


@dataclass(frozen=True)
class Holdings:
    """What a Trader owns in one Strategy: a quantity per asset and residual fiat cash."""

    positions: Mapping[str, Decimal] = field(default_factory=dict)
    cash: Decimal = Decimal(0)

    def quantity(self, asset: str) -> Decimal:
        return self.positions.get(asset, Decimal(0))

    @property
    def held_assets(self) -> tuple[str, ...]:
        return tuple(sorted(a for a, q in self.positions.items() if q > 0))

    def value(self, prices: Mapping[str, Decimal]) -> Decimal:
        """Exact value at `prices` (positions + cash); every held asset must be priced."""
        return self.cash + sum((q * prices[a] for a, q in self.positions.items() if q), Decimal(0))

    def after(self, legs: tuple[Leg, ...], cash_in: Decimal, cash_out: Decimal) -> Holdings:
        """The holdings once `legs` settle, `cash_in` is funded and `cash_out` paid away."""
        positions = dict(self.positions)
        cash = self.cash + cash_in - cash_out
        for leg in legs:
            signed = leg.quantity if leg.side is Side.BUY else -leg.quantity
            positions[leg.asset] = positions.get(leg.asset, Decimal(0)) + signed
            cash += -leg.notional if leg.side is Side.BUY else leg.notional
        return Holdings({a: q for a, q in positions.items() if q}, cash)
