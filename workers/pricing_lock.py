"""pricing-lock stage: once every chunk is checked, reserve the float and lock one price per asset.

The float is reserved first, in request order (`Trading.reserve_float`). Then firm quotes are
asked round by round as `domain.pricing.PriceDiscovery` says, each round's blocks computed
exactly from the Traders' allotments at the prices quoted so far, until every block fits the
quote it will be placed against (or an asset is found crossed and priced at the mid). A quote
that cannot be had, blocks that never settle down, or a quote expired before the lock fail the
Operation cleanly (`pricing_failed`): no Trader trades and every hold is released.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

import structlog

from domain.allotment import PricingBook
from domain.pricing import MAX_QUOTE_ROUNDS, LockedQuote, PriceDiscovery
from domain.statuses import OperationReason, OperationStatus
from domain.venue import Quote, QuoteExpiredError, VenueError
from infra.bus import Delivery
from infra.bus.messages import PricingRequested
from workers.context import StageContext

log = structlog.get_logger("workers.pricing_lock")


async def lock_prices(delivery: Delivery, ctx: StageContext) -> None:
    task = PricingRequested.model_validate_json(delivery.value)
    operation = await ctx.call(ctx.trading.operation, task.operation_id)
    if operation.status is not OperationStatus.PRICING or operation.failure:
        log.info(
            "pricing.skipped", operation_id=str(task.operation_id), status=operation.status.value
        )
        return
    book = await ctx.call(ctx.trading.pricing_book, task.operation_id)  # reserves the float
    try:
        quotes, crossed = await _discover(ctx, book)
        _require_fresh(quotes, ctx)
    except VenueError as error:
        await _fail(ctx, task.operation_id, str(error))
        return
    await ctx.call(ctx.trading.lock_prices, task.operation_id, _locked(quotes), crossed, book)
    log.info(
        "pricing.locked",
        operation_id=str(task.operation_id),
        prices={a: str(q.price) for a, q in quotes.items()},
        crossed=sorted(crossed),
    )


async def _discover(
    ctx: StageContext, book: PricingBook
) -> tuple[dict[str, Quote], dict[str, dict[str, str]]]:
    currency = book.quoted_currency
    indicative = await ctx.quotes.indicative(currency, book.assets)
    missing = sorted(set(book.assets) - set(indicative))
    if missing:
        raise VenueError(f"no price for {', '.join(missing)}")
    discovery = PriceDiscovery(book.assets, book.precisions())
    requests = discovery.first(await ctx.call(book.blocks, indicative))
    quotes: dict[str, Quote] = {}
    for _ in range(MAX_QUOTE_ROUNDS):
        for request in requests:
            quote = await ctx.quotes.firm_quote(
                currency, request.asset, request.side, request.quantity
            )
            quotes[request.asset] = quote
            discovery.quoted(request.asset, quote.side, quote.quantity, quote.price)
        requests = discovery.next(await ctx.call(book.blocks, discovery.prices()))
        if not requests:
            return quotes, discovery.crossed
        log.info("pricing.requoted", assets=sorted(r.asset for r in requests))
    moving = ", ".join(sorted(r.asset for r in requests))
    raise VenueError(
        f"the blocks of {moving} did not fit their quotes after {MAX_QUOTE_ROUNDS} rounds"
    )


def _require_fresh(quotes: Mapping[str, Quote], ctx: StageContext) -> None:
    now = ctx.clock()
    expired = sorted(a for a, q in quotes.items() if q.expires_at <= now)
    if expired:
        raise QuoteExpiredError(f"quote for {', '.join(expired)} expired before it was locked")


def _locked(quotes: Mapping[str, Quote]) -> dict[str, LockedQuote]:
    return {
        asset: LockedQuote(
            asset,
            quote.price,
            quote.quote_id,
            quote.quoted_at.isoformat(),
            quote.side.value,
            str(quote.quantity),
            quote.expires_at.isoformat(),
        )
        for asset, quote in quotes.items()
    }


async def _fail(ctx: StageContext, operation_id: UUID, detail: str) -> None:
    await ctx.call(ctx.trading.fail_operation, operation_id, OperationReason.PRICING_FAILED, detail)
    log.warning("pricing.failed", operation_id=str(operation_id), detail=detail)
