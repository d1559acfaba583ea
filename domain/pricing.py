"""Pricing: the quotes that lock one price per asset, and the block orders placed against them.

Buys and sells of one asset are netted across every Trader (spec §11.11), so the venue sees
one block order per asset (sized exactly: `domain.allotment`); every in-scope Trader then
trades at the one locked price. `PriceDiscovery` decides which firm quotes to ask for until
every block fits the quote it will be placed against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from domain.money import ceil_to
from domain.statuses import Side

#: A quote is asked for this much more than the block at the prices known then, so that the
#: block at the quoted price (a little lower for a buy, the quantity a little higher) still fits.
QUOTE_HEADROOM = Decimal("0.05")
#: Rounds of quotes before pricing gives up on an Operation whose blocks keep moving.
MAX_QUOTE_ROUNDS = 4


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

    def covers(self, order: BlockOrder) -> bool:
        """Whether a block order can be placed against this quote: same side, and no more than
        the quoted size (the quote is asked with some headroom for exactly this)."""
        return order.side.value == self.side and order.quantity <= Decimal(self.quantity or "0")

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


@dataclass(frozen=True)
class QuoteRequest:
    """A firm quote to ask for; a zero `quantity` asks for a price with no size (the mid)."""

    asset: str
    side: Side
    quantity: Decimal


@dataclass(frozen=True)
class QuotedTerms:
    side: Side
    quantity: Decimal
    price: Decimal


def _signed(order: BlockOrder | None) -> Decimal:
    if order is None:
        return Decimal(0)
    return order.quantity if order.side is Side.BUY else -order.quantity


@dataclass
class PriceDiscovery:
    """Which firm quotes to ask for, round by round, until every block fits its quote.

    A block depends on the prices (a rebalance's values move with them) and a quote's price on
    its side (the ask for a buy, the bid for a sell). The first round asks, per asset, for the
    side and size of its block at indicative prices, with `QUOTE_HEADROOM`. Each later round
    asks again only for the assets whose block at the prices quoted so far does not fit: the
    other side, or more than was quoted. An asset whose block takes the other side at *each*
    side's price is crossed: its Traders' buys and sells meet inside the venue's spread, so no
    venue order fits. It is priced at the venue's mid (a quote with no size), no block is
    placed, and the house carries the Traders' small net, recorded with the nets seen at the
    bid and the ask as evidence that it was within the spread.
    """

    assets: Sequence[str]
    precisions: Mapping[str, int]
    headroom: Decimal = QUOTE_HEADROOM
    quotes: dict[str, QuotedTerms] = field(default_factory=dict)
    #: Per asset and side, the net seen when the asset was priced at that side's quote.
    seen: dict[str, dict[Side, Decimal]] = field(default_factory=dict)
    crossed: dict[str, dict[str, str]] = field(default_factory=dict)

    def first(self, blocks: Mapping[str, BlockOrder]) -> list[QuoteRequest]:
        """The first round, from the blocks at indicative prices."""
        return [self._request(asset, blocks.get(asset)) for asset in self.assets]

    def quoted(self, asset: str, side: Side, quantity: Decimal, price: Decimal) -> None:
        self.quotes[asset] = QuotedTerms(side, quantity, price)

    def prices(self) -> dict[str, Decimal]:
        return {asset: terms.price for asset, terms in self.quotes.items()}

    def next(self, blocks: Mapping[str, BlockOrder]) -> list[QuoteRequest]:
        """Given the blocks at `prices()`, the quotes still needed; none when all fit."""
        requests = []
        for asset in self.assets:
            if asset in self.crossed:
                continue
            terms, order = self.quotes[asset], blocks.get(asset)
            if terms.quantity > 0:
                self.seen.setdefault(asset, {})[terms.side] = _signed(order)
            if order is None or (
                terms.quantity > 0 and order.side is terms.side and order.quantity <= terms.quantity
            ):
                continue
            if self._crosses(asset):
                seen = self.seen[asset]
                self.crossed[asset] = {
                    "net_at_ask": str(seen[Side.BUY]),
                    "net_at_bid": str(seen[Side.SELL]),
                }
                requests.append(QuoteRequest(asset, Side.BUY, Decimal(0)))
                continue
            requests.append(self._request(asset, order))
        return requests

    def _crosses(self, asset: str) -> bool:
        """At the ask the Traders sell on net, at the bid they buy: no side fits."""
        seen = self.seen.get(asset, {})
        return seen.get(Side.BUY, Decimal(0)) < 0 < seen.get(Side.SELL, Decimal(0))

    def _request(self, asset: str, order: BlockOrder | None) -> QuoteRequest:
        if order is None:
            return QuoteRequest(asset, Side.BUY, Decimal(0))
        size = ceil_to(order.quantity * (1 + self.headroom), self.precisions[asset])
        return QuoteRequest(asset, order.side, size)
