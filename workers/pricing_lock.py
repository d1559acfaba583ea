"""pricing-lock stage: once every chunk is checked, reserve the float and lock one price per asset.

The float is reserved first, in request order (`Trading.reserve_float`). Then firm quotes are
asked round by round as `domain.pricing.PriceDiscovery` says: the first sized from the blocks
at indicative prices (as the credit check recorded them when they are exact, sparing a pass
over every Trader: `PricingBook.checked_blocks`), each later round's blocks computed exactly
from the Traders' allotments at the prices quoted so far, until every block fits the quote it
will be placed against (or an asset is found crossed and priced at the mid); a quote that
would expire before the lock, because sizing the blocks outlasted it, is asked for again on
the same terms. A quote that cannot be had, blocks that never settle down, or quotes that
keep expiring fail the Operation cleanly (`pricing_failed`): no Trader trades and every hold
is released. The locked blocks are placed at once, while their quotes are fresh
(`workers.blocks`).
"""

from __future__ import annotations

from uuid import UUID

import structlog

from domain.allotment import PricingBook
from domain.pricing import (
    BlockOrder,
    LockedQuote,
    PriceDiscovery,
    PricingFailedError,
    require_fresh,
)
from domain.statuses import OperationReason
from domain.venue import VenueError
from infra.bus import Delivery
from infra.bus.messages import PricingRequested
from workers.blocks import place_blocks
from workers.context import StageContext

log = structlog.get_logger("workers.pricing_lock")


async def lock_prices(delivery: Delivery, ctx: StageContext) -> None:
    task = PricingRequested.model_validate_json(delivery.value)
    # One load of the Operation for the whole step: the book carries it to the lock.
    operation, book = await ctx.call(ctx.trading.open_pricing, task.operation_id)
    if book is None:
        log.info(
            "pricing.skipped", operation_id=str(task.operation_id), status=operation.status.value
        )
        return
    try:
        quotes, crossed = await _discover(ctx, book)
        require_fresh(quotes, ctx.clock())
    except (VenueError, PricingFailedError) as error:
        await _fail(ctx, task.operation_id, str(error))
        return
    locked = await ctx.call(ctx.trading.lock_prices, task.operation_id, quotes, crossed, book)
    log.info(
        "pricing.locked",
        operation_id=str(task.operation_id),
        prices={a: str(q.price) for a, q in quotes.items()},
        crossed=sorted(crossed),
    )
    await place_blocks(task.operation_id, ctx, locked)


async def _discover(
    ctx: StageContext, book: PricingBook
) -> tuple[dict[str, LockedQuote], dict[str, dict[str, str]]]:
    currency = book.quoted_currency
    discovery = PriceDiscovery(book.assets, book.precisions())
    requests = discovery.first(await _first_blocks(ctx, book))
    quotes: dict[str, LockedQuote] = {}
    while requests:
        for request in requests:
            quote = await ctx.quotes.firm_quote(
                currency, request.asset, request.side, request.quantity
            )
            quotes[request.asset] = LockedQuote.of(request.asset, quote)
            discovery.quoted(request.asset, quote.side, quote.quantity, quote.price)
        requests = discovery.requote(await ctx.call(book.blocks, discovery.prices()))
        if requests:
            log.info("pricing.requoted", assets=sorted(r.asset for r in requests))
            continue
        expiries = {asset: quote.expiry for asset, quote in quotes.items()}
        requests = discovery.expiring(expiries, ctx.clock())
        if requests:
            log.info("pricing.refreshed", assets=sorted(r.asset for r in requests))
    return quotes, discovery.crossed


async def _first_blocks(ctx: StageContext, book: PricingBook) -> dict[str, BlockOrder]:
    """The blocks the first quotes are sized from: as the credit check recorded them when it
    could (`PricingBook.checked_blocks`), else from a pass at the venue's indicative prices."""
    checked = book.checked_blocks()
    if checked is not None:
        return checked
    indicative = await ctx.quotes.indicative(book.quoted_currency, book.assets)
    missing = sorted(set(book.assets) - set(indicative))
    if missing:
        raise VenueError(f"no price for {', '.join(missing)}")
    blocks: dict[str, BlockOrder] = await ctx.call(book.blocks, indicative)
    return blocks


async def _fail(ctx: StageContext, operation_id: UUID, detail: str) -> None:
    await ctx.call(ctx.trading.fail_operation, operation_id, OperationReason.PRICING_FAILED, detail)
    log.warning("pricing.failed", operation_id=str(operation_id), detail=detail)
