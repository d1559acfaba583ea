"""Pricing: net the Operation's flow per asset into block orders, and the quotes that lock it.

Buys and sells of one asset are netted across every Trader (spec §11.11), so the venue sees
one block order per asset; every in-scope Trader then trades at the one locked price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from domain.statuses import Side


@dataclass(frozen=True)
class LockedQuote:
    """A firm quote: the price every Trader of the Operation gets for this asset."""

    asset: str
    price: Decimal
    quote_id: str
    quoted_at: str

    def as_dict(self) -> dict[str, str]:
        return {"price": str(self.price), "quote_id": self.quote_id, "quoted_at": self.quoted_at}


@dataclass(frozen=True)
class BlockOrder:
    asset: str
    side: Side
    quantity: Decimal

    def as_dict(self) -> dict[str, str]:
        return {"side": self.side.value, "quantity": str(self.quantity)}


@dataclass(frozen=True)
class BlockFill:
    """The venue's fill of one block order, at the locked price."""

    asset: str
    side: Side
    quantity: Decimal
    price: Decimal
    fill_id: str

    def as_dict(self) -> dict[str, str]:
        return {
            "side": self.side.value,
            "quantity": str(self.quantity),
            "price": str(self.price),
            "fill_id": self.fill_id,
        }


def net_block_orders(flows: Mapping[str, Mapping[str, str]]) -> dict[str, BlockOrder]:
    """One order per asset for the net of estimated buys and sells; none when they cancel."""
    orders = {}
    for asset, flow in sorted(flows.items()):
        net = Decimal(flow.get("buy", "0")) - Decimal(flow.get("sell", "0"))
        if net:
            orders[asset] = BlockOrder(asset, Side.BUY if net > 0 else Side.SELL, abs(net))
    return orders
