"""pricing-lock stage: once every chunk is checked, one firm quote per asset is locked.

The side and size of each quote come from the block orders at indicative prices. If the
quoted prices flip an asset's net side (a rebalance whose buys and sells nearly cancel) or
grow its block beyond the quoted size, that asset is quoted again once on the final terms,
so the block order matches the quote it is placed against. A quote that cannot be had, or
expires before it is locked, fails the Operation cleanly (`pricing_failed`): no Trader
trades and every hold is released.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from uuid import UUID

import structlog

from domain.pricing import BlockOrder, LockedQuote
from domain.statuses import OperationReason, OperationStatus, Side
from infra.bus import Delivery
from infra.venue import Quote, QuoteExpiredError, VenueError
from workers.context import StageContext
from workers.messages import PricingRequested

log = structlog.get_logger("workers.pricing_lock")


async def lock_prices(delivery: Delivery, ctx: StageContext) -> None:
    task = PricingRequested.model_validate_json(delivery.value)
    operation = await ctx.call(ctx.trading.operation, task.operation_id)
    if operation.status is not OperationStatus.PRICING or operation.failure:
        log.info(
            "pricing.skipped", operation_id=str(task.operation_id), status=operation.status.value
        )
        return
    currency = operation.quoted_currency
    assets = sorted(operation.flows)
    try:
        indicative = await ctx.quotes.indicative(currency, assets)
        missing = sorted(set(assets) - set(indicative))
        if missing:
            raise VenueError(f"no price for {', '.join(missing)}")
        estimate = await ctx.call(ctx.trading.estimated_blocks, task.operation_id, indicative)
        quotes = await _quote(ctx, currency, assets, estimate)
        locked = {q.asset: q.price for q in quotes.values()}
        final = await ctx.call(ctx.trading.estimated_blocks, task.operation_id, locked)
        stale = [
            asset
            for asset, order in final.items()
            if order.side is not quotes[asset].side or order.quantity > quotes[asset].quantity
        ]
        if stale:
            quotes |= await _quote(ctx, currency, stale, final)
        _require_fresh(quotes, ctx)
    except VenueError as error:
        await _fail(ctx, task.operation_id, str(error))
        return
    await ctx.call(ctx.trading.lock_prices, task.operation_id, _locked(quotes))
    log.info(
        "pricing.locked",
        operation_id=str(task.operation_id),
        prices={a: str(q.price) for a, q in quotes.items()},
    )


async def _quote(
    ctx: StageContext, currency: str, assets: list[str], orders: Mapping[str, BlockOrder]
) -> dict[str, Quote]:
    quotes = {}
    for asset in assets:
        order = orders.get(asset)
        side, quantity = (order.side, order.quantity) if order else (Side.BUY, Decimal(0))
        quotes[asset] = await ctx.quotes.firm_quote(currency, asset, side, quantity)
    return quotes


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
