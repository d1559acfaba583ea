"""Where prices and fills come from: the ports a venue adapter implements (`infra.venue`).

The pricing stage asks a QuoteProvider for indicative prices (credit check) and firm quotes
(the lock); the execution stage places one block order per asset at an ExecutionVenue at the
locked quote. The default adapter is a deterministic simulation; a real venue adapter
implements the same two protocols.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from domain.statuses import Side


class VenueError(Exception):
    """Raised when the venue cannot quote or fill; the Operation fails cleanly."""


class QuoteUnavailableError(VenueError):
    """Raised when no quote can be had for an asset (unknown, halted or venue down)."""


class QuoteExpiredError(VenueError):
    """Raised when an order refers to a quote past its expiry."""


class OrderRejectedError(VenueError):
    """Raised when the venue refuses a block order."""


@dataclass(frozen=True)
class Quote:
    """A firm quote: the venue will fill up to `quantity` of `asset` on `side` at `price`."""

    quote_id: str
    asset: str
    quoted_currency: str
    side: Side
    price: Decimal
    quantity: Decimal
    quoted_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class Fill:
    fill_id: str
    client_order_id: str
    asset: str
    side: Side
    quantity: Decimal
    price: Decimal
    filled_at: datetime


class QuoteProvider(Protocol):
    async def indicative(
        self, quoted_currency: str, assets: Sequence[str]
    ) -> Mapping[str, Decimal]:
        """Current mid prices; assets that cannot be priced are absent (never guessed)."""

    async def firm_quote(
        self, quoted_currency: str, asset: str, side: Side, quantity: Decimal
    ) -> Quote:
        """A firm, expiring quote; raises QuoteUnavailableError. A zero `quantity` asks for a
        firm price only (the Operation's buys and sells of the asset cross internally)."""


class ExecutionVenue(Protocol):
    async def place_block(self, client_order_id: str, quote: Quote, quantity: Decimal) -> Fill:
        """Fill a block order at the quote's price. Idempotent per client_order_id: placing the
        same id again returns the same fill. Raises QuoteExpiredError or OrderRejectedError."""
