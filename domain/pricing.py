"""Pricing: net the Operation's flow per asset into block orders, and the quotes that lock it.

Buys and sells of one asset are netted across every Trader (spec §11.11), so the venue sees
one block order per asset; every in-scope Trader then trades at the one locked price.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from domain.allocations import Allocations
from domain.statuses import OperationType, Side


@dataclass(frozen=True)
class LockedQuote:
    """A firm quote: the price every Trader of the Operation gets for this asset.

    Side, size and expiry are the venue's terms of the quote, kept so the block order can be
    placed against it later and an auditor can see what was agreed.
    """

    asset: str
    price: Decimal
    quote_id: str
    quoted_at: str
    side: str = ""
    quantity: str = ""
    expires_at: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "price": str(self.price),
            "quote_id": self.quote_id,
            "quoted_at": self.quoted_at,
            "side": self.side,
            "quantity": self.quantity,
            "expires_at": self.expires_at,
        }


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


def net_block_orders(
    kind: OperationType,
    flows: Mapping[str, Mapping[str, str]],
    cash: Decimal,
    allocations: Allocations | None,
    prices: Mapping[str, Decimal],
    precision: Callable[[str], int],
) -> dict[str, BlockOrder]:
    """One order per asset for the net the Traders will trade at the locked `prices`.

    The credit check records price-independent sums (fiat budgets of buys, fiat worth of
    partial sells, quantities held, cash), so the block is sized at the locked price rather
    than from indicative quantities: a price move between check and lock changes the block
    with it. What remains is recorded by the Operation as the house's residual: at most one
    precision unit per Trader for enrollments, top-ups and liquidations; rebalances and
    partial sells can leave more, because per-Trader dust drops, funds and holding caps are
    invisible in the sums (sizing them exactly needs a pass over every Trader at the locked
    price).
    """
    orders = {}
    for asset, flow in sorted(flows.items()):
        net = _net_quantity(kind, asset, flows, flow, cash, allocations, prices)
        net = net.quantize(Decimal(1).scaleb(-precision(asset)), rounding=ROUND_DOWN)
        if net:
            orders[asset] = BlockOrder(asset, Side.BUY if net > 0 else Side.SELL, abs(net))
    return orders


def _net_quantity(
    kind: OperationType,
    asset: str,
    flows: Mapping[str, Mapping[str, str]],
    flow: Mapping[str, str],
    cash: Decimal,
    allocations: Allocations | None,
    prices: Mapping[str, Decimal],
) -> Decimal:
    def total(key: str, of: Mapping[str, str] = flow) -> Decimal:
        return Decimal(of.get(key, "0"))

    price = prices[asset]
    if kind in (OperationType.ENROLLMENT, OperationType.TOP_UP):
        return total("buy_notional") / price
    if kind is OperationType.PARTIAL_SELL:
        return -total("sell_worth") / price
    if kind is OperationType.LIQUIDATION:
        return -total("held")
    assert allocations is not None, "a rebalance carries allocations"
    value = cash + sum((total("held", f) * prices[a] for a, f in flows.items()), Decimal(0))
    return value * allocations.weight_of(asset) / price - total("held")
