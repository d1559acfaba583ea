"""A deterministic stand-in for a liquidity venue: quotes, firm fills and injectable failures.

Prices follow a seeded random walk: each `tick()` moves every asset by a whole number of basis
points drawn from `random.Random(f"{seed}:{asset}:{step}")`. A string seed is hashed the same
way in every process, and one generator per (asset, step) means an asset's path depends only
on the seed and the number of ticks, never on which other assets were asked for or in which
order. The walk runs on Decimal under a fixed context, so no float ever touches a price.

Reported prices have two decimals. The ask is rounded up and the bid down, so rounding never
gives away the venue's half-spread, and with a zero spread both equal the mid.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import TYPE_CHECKING

from domain.statuses import Side
from domain.venue import (
    Fill,
    OrderRejectedError,
    Quote,
    QuoteExpiredError,
    QuoteUnavailableError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from infra.venue.config import VenueConfig

#: Namespace of every id this venue makes; fixed so ids are stable across runs.
VENUE_NAMESPACE = uuid.UUID("6f1d3c2a-8b4e-5f60-9a7b-0c1d2e3f4a5b")

CENT = Decimal("0.01")
_BPS = Decimal(10_000)
_TWO = Decimal(2)
# The walk must not depend on whatever decimal context the caller happens to run under.
_WALK_CONTEXT = Context(prec=34)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SimulatedVenue:
    """Implements both `QuoteProvider` and `ExecutionVenue` in memory, for one process."""

    def __init__(self, config: VenueConfig, *, now: Callable[[], datetime] | None = None) -> None:
        self.config = config
        self._now = now or _utc_now
        self._step = 0
        self._levels = {asset.upper(): price for asset, price in config.base_prices.items()}
        self._rates = {currency.upper(): rate for currency, rate in config.currency_rates.items()}
        self._fail_quotes = {asset.upper() for asset in config.fail_quotes}
        self._reject_orders = {asset.upper() for asset in config.reject_orders}
        self._quotes_issued = 0
        self._fills: dict[str, tuple[str, Fill]] = {}  # client order id -> (quote id, fill)

    # --- the simulated market -------------------------------------------------------------

    @property
    def step(self) -> int:
        return self._step

    def tick(self, steps: int = 1) -> None:
        """Move the market on; the only thing besides the seed that changes prices."""
        if steps < 0:
            raise ValueError(f"steps must not be negative, got {steps}")
        bound = self.config.step_bps
        with localcontext(_WALK_CONTEXT):
            for _ in range(steps):
                self._step += 1
                for asset, level in self._levels.items():
                    draw = random.Random(f"{self.config.seed}:{asset}:{self._step}")
                    move = Decimal(draw.randint(-bound, bound)) / _BPS
                    self._levels[asset] = level * (1 + move)

    def move(self, asset: str, factor: Decimal) -> None:
        """A market move of one asset (its level times `factor`): what the demo shows a
        policy reacting to."""
        if not (factor.is_finite() and factor > 0):
            raise ValueError(f"factor must be positive, got {factor}")
        key = asset.upper()
        if key not in self._levels:
            raise ValueError(f"{asset} is not quoted by this venue")
        with localcontext(_WALK_CONTEXT):
            self._levels[key] = self._levels[key] * factor

    def _mid(self, quoted_currency: str, asset: str) -> Decimal | None:
        level = self._levels.get(asset.upper())
        rate = self._rates.get(quoted_currency.upper())
        if level is None or rate is None:
            return None
        with localcontext(_WALK_CONTEXT):
            return max((level * rate).quantize(CENT, rounding=ROUND_HALF_EVEN), CENT)

    # --- QuoteProvider ----------------------------------------------------------------------

    async def indicative(
        self, quoted_currency: str, assets: Sequence[str]
    ) -> Mapping[str, Decimal]:
        """Mids for the known assets. Assets in `fail_quotes` are still published, so a test can
        pass the credit check and then fail at the lock."""
        await self._delay()
        mids = {asset: self._mid(quoted_currency, asset) for asset in assets}
        return {asset: mid for asset, mid in mids.items() if mid is not None}

    async def firm_quote(
        self, quoted_currency: str, asset: str, side: Side, quantity: Decimal
    ) -> Quote:
        await self._delay()
        if asset.upper() in self._fail_quotes:
            raise QuoteUnavailableError(f"{asset} is halted at the venue")
        if not (quantity.is_finite() and quantity >= 0):
            raise QuoteUnavailableError(f"cannot quote a quantity of {quantity} {asset}")
        mid = self._mid(quoted_currency, asset)
        if mid is None:
            raise QuoteUnavailableError(f"no market for {asset}/{quoted_currency}")
        quoted_at = self._clock()
        quote = Quote(
            quote_id="",
            asset=asset,
            quoted_currency=quoted_currency,
            side=side,
            # No size means the Traders' buys and sells cross internally: no venue trade, no
            # spread to pay, so they all get the mid.
            price=self._side_price(mid, side) if quantity else mid,
            quantity=quantity,
            quoted_at=quoted_at,
            expires_at=quoted_at + self.config.quote_ttl,
        )
        return replace(quote, quote_id=self._quote_id(quote))

    def _quote_id(self, quote: Quote, nonce: bytes | None = None) -> str:
        """A nonce (8 bytes) and a MAC of it and the quote's terms under the venue's
        seed (8 bytes), as a UUID. Like a real venue's shared order book, it lets every
        worker process verify a quote another one obtained (each process has its own
        simulator); a quote with altered terms no longer matches its id."""
        if nonce is None:  # deterministic per seed, like the prices: runs replay exactly
            self._quotes_issued += 1
            seeded = f"{self.config.seed}:quote:{self._quotes_issued}".encode()
            nonce = hashlib.sha256(seeded).digest()[:8]
        terms = (
            f"{quote.asset}:{quote.quoted_currency}:{quote.side.value}:{quote.price}:"
            f"{quote.quantity}:{quote.quoted_at.isoformat()}:{quote.expires_at.isoformat()}"
        )
        key = f"simulated-venue:{self.config.seed}".encode()
        mac = hmac.new(key, nonce + terms.encode(), hashlib.sha256).digest()[:8]
        return str(uuid.UUID(bytes=nonce + mac))

    def _genuine(self, quote: Quote) -> bool:
        try:
            nonce = uuid.UUID(quote.quote_id).bytes[:8]
        except ValueError:
            return False
        return hmac.compare_digest(quote.quote_id, self._quote_id(quote, nonce))

    def _side_price(self, mid: Decimal, side: Side) -> Decimal:
        with localcontext(_WALK_CONTEXT):
            half = self.config.spread / _TWO
            if side is Side.BUY:
                return (mid * (1 + half)).quantize(CENT, rounding=ROUND_CEILING)
            return max((mid * (1 - half)).quantize(CENT, rounding=ROUND_FLOOR), CENT)

    # --- ExecutionVenue ---------------------------------------------------------------------

    async def place_block(self, client_order_id: str, quote: Quote, quantity: Decimal) -> Fill:
        """Fill at the quote's price. A repeated `client_order_id` gets its first fill back,
        even after the quote expired; reusing it for another quote or quantity is refused."""
        await self._delay()
        if (previous := self._fills.get(client_order_id)) is not None:
            return self._replay(client_order_id, previous, quote, quantity)
        self._check_order(client_order_id, quote, quantity)
        fill = Fill(
            fill_id=str(uuid.uuid5(VENUE_NAMESPACE, f"fill:{client_order_id}")),
            client_order_id=client_order_id,
            asset=quote.asset,
            side=quote.side,
            quantity=quantity,
            price=quote.price,
            filled_at=self._clock(),
        )
        self._fills[client_order_id] = (quote.quote_id, fill)
        return fill

    def _check_order(self, client_order_id: str, quote: Quote, quantity: Decimal) -> None:
        if not self._genuine(quote):
            raise OrderRejectedError(f"order {client_order_id}: quote {quote.quote_id} unknown")
        if self._clock() >= quote.expires_at:
            raise QuoteExpiredError(
                f"order {client_order_id}: quote {quote.quote_id} expired at {quote.expires_at}"
            )
        if quote.asset.upper() in self._reject_orders:
            raise OrderRejectedError(f"order {client_order_id}: {quote.asset} is not tradable")
        limit = quote.quantity * (1 + self.config.quantity_tolerance)
        if not (quantity.is_finite() and 0 < quantity <= limit):
            raise OrderRejectedError(
                f"order {client_order_id}: quantity {quantity} outside (0, {limit}]"
            )

    def _replay(
        self, client_order_id: str, previous: tuple[str, Fill], quote: Quote, quantity: Decimal
    ) -> Fill:
        quote_id, fill = previous
        if quote.quote_id != quote_id or quantity != fill.quantity:
            raise OrderRejectedError(f"order {client_order_id} was already filled on other terms")
        return fill

    # --- plumbing ---------------------------------------------------------------------------

    async def _delay(self) -> None:
        if self.config.latency_ms:
            await asyncio.sleep(self.config.latency_ms / 1000)

    def _clock(self) -> datetime:
        now = self._now()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("the venue clock must return timezone-aware datetimes")
        return now
