"""Pricing: the quotes that lock one price per asset, and the block orders placed against them.

Buys and sells of one asset are netted across every Trader (spec §11.11), so the venue sees
one block order per asset (sized exactly: `domain.allotment`); every in-scope Trader then
trades at the one locked price. `PriceDiscovery` decides which firm quotes to ask for until
every block fits the quote it will be placed against, within `MAX_QUOTE_ROUNDS`. Sizing the
blocks exactly takes a pass over every Trader (a minute for a million), longer than a firm
quote lives: a quote that would expire before the lock is asked for again on the same terms
(`PriceDiscovery.expiring`), and an unchanged price costs no second pass (the blocks at a set
of prices are computed once). A quote expired at the lock still fails it (`require_fresh`).

A venue's quote becomes a `LockedQuote` here (`LockedQuote.of`), and the Operation's stored
terms become one again here (`LockedQuote.from_dict`): the conversions between the venue's
types and the event's JSON strings live in this one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from domain.money import ceil_to
from domain.statuses import Side

#: A quote is asked for this much more than the block at the prices known then, so that the
#: block at the quoted price (a little lower for a buy, the quantity a little higher) still fits.
QUOTE_HEADROOM = Decimal("0.05")
#: Rounds of quotes before pricing gives up on an Operation whose blocks keep moving (or
#: whose quotes keep expiring while the blocks are sized).
MAX_QUOTE_ROUNDS = 4
#: A quote must still live this long when the blocks fit it: the time to lock the prices and
#: place the blocks. One closer to its expiry is asked for again.
LOCK_MARGIN = timedelta(seconds=2)


class PricingFailedError(Exception):
    """The quotes cannot lock this Operation's prices (blocks that never settle down, a quote
    expired before the lock): the Operation fails with `pricing_failed` and this detail."""


class FirmQuote(Protocol):
    """A venue's firm quote, as the pricing stage receives it."""

    @property
    def quote_id(self) -> str: ...
    @property
    def side(self) -> Side: ...
    @property
    def price(self) -> Decimal: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def quoted_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime: ...


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

    @classmethod
    def of(cls, asset: str, quote: FirmQuote) -> LockedQuote:
        return cls(
            asset,
            quote.price,
            quote.quote_id,
            quote.quoted_at.isoformat(),
            quote.side.value,
            str(quote.quantity),
            quote.expires_at.isoformat(),
        )

    @classmethod
    def from_dict(cls, asset: str, data: Mapping[str, str]) -> LockedQuote:
        """The quote as the Operation's `PricesLocked` event stored it (`as_dict`)."""
        return cls(
            asset,
            Decimal(data["price"]),
            data["quote_id"],
            data["quoted_at"],
            data.get("side", ""),
            data.get("quantity", ""),
            data.get("expires_at", ""),
        )

    @property
    def quote_side(self) -> Side:
        return Side(self.side)

    @property
    def quote_quantity(self) -> Decimal:
        return Decimal(self.quantity or "0")

    @property
    def quoted_time(self) -> datetime:
        return datetime.fromisoformat(self.quoted_at)

    @property
    def expiry(self) -> datetime:
        return datetime.fromisoformat(self.expires_at)

    def covers(self, order: BlockOrder) -> bool:
        """Whether a block order can be placed against this quote: same side, and no more than
        the quoted size (the quote is asked with some headroom for exactly this)."""
        return order.side.value == self.side and order.quantity <= self.quote_quantity

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
    max_rounds: int = MAX_QUOTE_ROUNDS
    rounds: int = 0

    def first(self, blocks: Mapping[str, BlockOrder]) -> list[QuoteRequest]:
        """The first round, from the blocks at indicative prices."""
        return [self._request(asset, blocks.get(asset)) for asset in self.assets]

    def quoted(self, asset: str, side: Side, quantity: Decimal, price: Decimal) -> None:
        self.quotes[asset] = QuotedTerms(side, quantity, price)

    def requote(self, blocks: Mapping[str, BlockOrder]) -> list[QuoteRequest]:
        """After a round of quotes, given the blocks at `prices()`: the quotes to ask for in
        the next round, none when every block fits. A round that still leaves blocks moving
        after `max_rounds` fails the pricing."""
        self.rounds += 1
        requests = self.next(blocks)
        if requests and self.rounds >= self.max_rounds:
            moving = ", ".join(sorted(r.asset for r in requests))
            raise PricingFailedError(
                f"the blocks of {moving} did not fit their quotes after {self.max_rounds} rounds"
            )
        return requests

    def prices(self) -> dict[str, Decimal]:
        return {asset: terms.price for asset, terms in self.quotes.items()}

    def expiring(
        self, expiries: Mapping[str, datetime], now: datetime, margin: timedelta = LOCK_MARGIN
    ) -> list[QuoteRequest]:
        """Once every block fits: the quotes that would expire before the lock, asked for
        again on the same terms (side and size), for the blocks were sized meanwhile. A
        round like any other: quotes still expiring after `max_rounds` fail the pricing."""
        late = [a for a in self.assets if expiries[a] - margin <= now]
        if not late:
            return []
        self.rounds += 1
        if self.rounds >= self.max_rounds:
            raise PricingFailedError(
                f"quote for {', '.join(sorted(late))} expired while the blocks were sized, "
                f"{self.max_rounds} rounds"
            )
        return [QuoteRequest(a, self.quotes[a].side, self.quotes[a].quantity) for a in late]

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


def require_fresh(quotes: Mapping[str, LockedQuote], now: datetime) -> None:
    """Refuses quotes of which any has expired by `now`: the lock must not promise a price
    the venue no longer honours."""
    late = sorted(a for a, q in quotes.items() if q.expiry <= now)
    if late:
        raise PricingFailedError(f"quote for {', '.join(late)} expired before it was locked")
