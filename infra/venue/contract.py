"""The contract every venue adapter keeps, as checks an adapter's own test suite runs.

The pipeline relies on these properties (see `docs/venue.md` for the why of each): exact
Decimal prices; a firm quote fills at exactly its price, for exactly the quantity ordered or
not at all; a client order id fills once, and its fill comes back to any repeat, even after
the quote expired and from another instance (another worker process); an unknown or halted
asset is a `QuoteUnavailableError`, an order the venue will not fill an `OrderRejectedError`
or `QuoteExpiredError` (the Operation fails cleanly), never a fill of something else.

Each check is a plain coroutine function taking a `VenueSubject`; `CONTRACT_CHECKS` lists
them. With pytest (and pytest-asyncio):

    @pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__)
    async def test_my_venue_keeps_the_contract(check: ContractCheck) -> None:
        await check(VenueSubject(make_venue=lambda: MyVenue(...), assets=("BTC", "ETH")))

`tests/unit/test_simulated_venue_contract.py` runs them on the shipped `SimulatedVenue`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import uuid4

from domain.statuses import Side
from domain.venue import (
    ExecutionVenue,
    Fill,
    OrderRejectedError,
    Quote,
    QuoteExpiredError,
    QuoteProvider,
    QuoteUnavailableError,
    VenueError,
)


class Venue(QuoteProvider, ExecutionVenue, Protocol):
    """What the engine needs of one adapter object: both ports."""


async def _sleep_past_expiry(quote: Quote) -> None:
    await asyncio.sleep(max((quote.expires_at - datetime.now(UTC)).total_seconds(), 0) + 0.05)


@dataclass(frozen=True)
class VenueSubject:
    """An adapter under test and what the checks may ask of it."""

    #: A new instance each call; instances must agree with each other, as worker processes do.
    make_venue: Callable[[], Venue]
    #: Assets the venue quotes in `quoted_currency`, at least one.
    assets: tuple[str, ...]
    quoted_currency: str = "USD"
    #: A block size the venue fills for every asset in `assets`.
    quantity: Decimal = Decimal("0.01")
    #: An asset the venue does not know.
    unknown_asset: str = "NOT-AN-ASSET"
    #: An asset halted now (no firm quote), when the adapter's test can arrange one.
    halted_asset: str | None = None
    #: An asset whose orders the venue refuses, when the adapter's test can arrange one.
    rejected_asset: str | None = None
    #: Makes `quote` expire (default: wait for its `expires_at` in real time).
    expire: Callable[[Quote], Awaitable[None]] = field(default=_sleep_past_expiry)


ContractCheck = Callable[[VenueSubject], Awaitable[None]]


def _order_id() -> str:
    return f"contract-{uuid4()}"


def _is_price(value: Any) -> bool:
    return isinstance(value, Decimal) and value.is_finite() and value > 0


def _aware(moment: datetime) -> bool:
    return moment.tzinfo is not None and moment.utcoffset() is not None


async def indicative_prices_are_positive_decimals_for_known_assets_only(
    subject: VenueSubject,
) -> None:
    venue = subject.make_venue()
    asked = [*subject.assets, subject.unknown_asset]
    prices = await venue.indicative(subject.quoted_currency, asked)
    assert set(prices) <= set(asked), f"prices for assets not asked: {set(prices) - set(asked)}"
    assert subject.unknown_asset not in prices, "an unknown asset must be absent, never guessed"
    assert set(subject.assets) <= set(prices), f"no price for {set(subject.assets) - set(prices)}"
    bad = {asset: price for asset, price in prices.items() if not _is_price(price)}
    assert not bad, f"prices must be finite positive Decimals (never floats): {bad}"


async def a_firm_quote_echoes_its_terms_and_expires_later(subject: VenueSubject) -> None:
    venue = subject.make_venue()
    for asset in subject.assets:
        for side in Side:
            quote = await venue.firm_quote(subject.quoted_currency, asset, side, subject.quantity)
            terms = (quote.asset, quote.quoted_currency, quote.side, quote.quantity)
            assert terms == (asset, subject.quoted_currency, side, subject.quantity), quote
            assert _is_price(quote.price), f"price must be a finite positive Decimal: {quote}"
            assert isinstance(quote.quote_id, str) and quote.quote_id, "a quote needs an id"
            assert _aware(quote.quoted_at) and _aware(quote.expires_at), "timezone-aware times"
            assert quote.expires_at > quote.quoted_at, f"a quote must live a while: {quote}"


async def a_zero_quantity_quote_gives_a_price(subject: VenueSubject) -> None:
    """The Operation's buys and sells of an asset crossed internally: a price, no trade."""
    venue = subject.make_venue()
    quote = await venue.firm_quote(subject.quoted_currency, subject.assets[0], Side.BUY, Decimal(0))
    assert _is_price(quote.price), quote
    assert quote.quantity == 0, quote


async def an_unknown_asset_gets_no_quote(subject: VenueSubject) -> None:
    await _no_quote(subject, subject.unknown_asset, "an unknown")


async def a_halted_asset_gets_no_quote(subject: VenueSubject) -> None:
    if subject.halted_asset is not None:
        await _no_quote(subject, subject.halted_asset, "a halted")


async def _no_quote(subject: VenueSubject, asset: str, which: str) -> None:
    venue = subject.make_venue()
    try:
        await venue.firm_quote(subject.quoted_currency, asset, Side.BUY, subject.quantity)
    except QuoteUnavailableError:
        return
    raise AssertionError(f"a firm quote for {which} asset must raise QuoteUnavailableError")


async def a_block_fills_all_at_the_quoted_price(subject: VenueSubject) -> None:
    """All or nothing, at exactly the locked price: every Trader gets that one price."""
    venue = subject.make_venue()
    for side in Side:
        quote = await venue.firm_quote(
            subject.quoted_currency, subject.assets[0], side, subject.quantity
        )
        order_id = _order_id()
        fill = await venue.place_block(order_id, quote, subject.quantity)
        _assert_fill_of(fill, order_id, quote, subject.quantity)


async def a_repeated_order_id_gets_its_first_fill_back(subject: VenueSubject) -> None:
    """A worker that crashed after the venue filled retries with the same id, possibly after
    the quote expired, possibly from another process: it must get that fill, not a second.
    (Across instances the check asks while the quote is fresh: the simulation remembers its
    fills per process, see docs/venue.md; a real venue keeps them whatever asks.)"""
    first, other = subject.make_venue(), subject.make_venue()
    quote = await first.firm_quote(
        subject.quoted_currency, subject.assets[0], Side.BUY, subject.quantity
    )
    order_id = _order_id()
    fill = await first.place_block(order_id, quote, subject.quantity)
    assert await first.place_block(order_id, quote, subject.quantity) == fill
    elsewhere = await other.place_block(order_id, quote, subject.quantity)
    same = (elsewhere.fill_id, elsewhere.quantity, elsewhere.price)
    assert same == (fill.fill_id, fill.quantity, fill.price), f"two fills: {fill}, {elsewhere}"
    await subject.expire(quote)
    again = await first.place_block(order_id, quote, subject.quantity)
    assert again == fill, f"a repeat must return the first fill: {fill} then {again}"


async def a_quote_from_another_instance_can_be_filled(subject: VenueSubject) -> None:
    """The pricing process locks the quote; after a crash the execution process places it."""
    quoting, placing = subject.make_venue(), subject.make_venue()
    quote = await quoting.firm_quote(
        subject.quoted_currency, subject.assets[-1], Side.SELL, subject.quantity
    )
    order_id = _order_id()
    fill = await placing.place_block(order_id, quote, subject.quantity)
    _assert_fill_of(fill, order_id, quote, subject.quantity)


async def an_expired_quote_is_not_filled(subject: VenueSubject) -> None:
    venue = subject.make_venue()
    quote = await venue.firm_quote(
        subject.quoted_currency, subject.assets[0], Side.BUY, subject.quantity
    )
    await subject.expire(quote)
    try:
        fill = await venue.place_block(_order_id(), quote, subject.quantity)
    except (QuoteExpiredError, OrderRejectedError):
        return
    raise AssertionError(f"an order at an expired quote must raise QuoteExpiredError: {fill}")


async def an_altered_quote_is_not_filled(subject: VenueSubject) -> None:
    """A quote is the venue's word on its terms: a better price is never filled."""
    venue = subject.make_venue()
    quote = await venue.firm_quote(
        subject.quoted_currency, subject.assets[0], Side.BUY, subject.quantity
    )
    cheaper = replace(quote, price=quote.price / 2)
    try:
        fill = await venue.place_block(_order_id(), cheaper, subject.quantity)
    except VenueError:
        return
    if fill.price != quote.price / 2:
        return  # filled at the venue's own price: the engine then fails the Operation
    raise AssertionError(f"a quote with an altered price was filled at it: {fill}")


async def a_refused_order_is_a_venue_error(subject: VenueSubject) -> None:
    if subject.rejected_asset is None:
        return
    venue = subject.make_venue()
    quote = await venue.firm_quote(
        subject.quoted_currency, subject.rejected_asset, Side.BUY, subject.quantity
    )
    try:
        fill = await venue.place_block(_order_id(), quote, subject.quantity)
    except OrderRejectedError:
        return
    raise AssertionError(f"a refused order must raise OrderRejectedError, not fill: {fill}")


def _assert_fill_of(fill: Fill, order_id: str, quote: Quote, quantity: Decimal) -> None:
    assert fill.client_order_id == order_id, fill
    assert (fill.asset, fill.side) == (quote.asset, quote.side), (fill, quote)
    assert fill.quantity == quantity, f"all or nothing: ordered {quantity}, filled {fill}"
    assert fill.price == quote.price, f"the fill must be at the quote's price: {fill}, {quote}"
    assert isinstance(fill.fill_id, str) and fill.fill_id, "a fill needs an id"
    assert _aware(fill.filled_at), "filled_at must be timezone-aware"


CONTRACT_CHECKS: tuple[ContractCheck, ...] = (
    indicative_prices_are_positive_decimals_for_known_assets_only,
    a_firm_quote_echoes_its_terms_and_expires_later,
    a_zero_quantity_quote_gives_a_price,
    an_unknown_asset_gets_no_quote,
    a_halted_asset_gets_no_quote,
    a_block_fills_all_at_the_quoted_price,
    a_repeated_order_id_gets_its_first_fill_back,
    a_quote_from_another_instance_can_be_filled,
    an_expired_quote_is_not_filled,
    an_altered_quote_is_not_filled,
    a_refused_order_is_a_venue_error,
)


async def check_contract(subject: VenueSubject) -> None:
    """Every check in turn; the first broken one raises AssertionError naming it."""
    for check in CONTRACT_CHECKS:
        try:
            await check(subject)
        except AssertionError as broken:
            raise AssertionError(f"{check.__name__}: {broken}") from broken
