"""credit-check stage: one chunk of Traders checked on every leg at indicative prices.

Adapter only: the credit rules live in `domain/credit.py`; the chunk's decisions and holds,
then the Operation's barrier, are written by `Trading.check_chunk`. Every chunk of an
Operation is checked at one set of indicative prices: the first chunk to get here records
the prices it fetched, the others use those (`Trading.record_indicative_prices`).
"""

from __future__ import annotations

import structlog

from infra.bus import Delivery
from infra.bus.messages import CreditCheckRequested
from workers.context import StageContext

log = structlog.get_logger("workers.credit_check")


async def check_credit(delivery: Delivery, ctx: StageContext) -> None:
    task = CreditCheckRequested.model_validate_json(delivery.value)
    operation = await ctx.call(ctx.trading.operation, task.operation_id)
    if not operation.indicative_prices:
        catalogue = await ctx.call(ctx.trading.catalogue)
        assets = catalogue.tradable_assets(operation.quoted_currency)
        prices = await ctx.quotes.indicative(operation.quoted_currency, assets)
        await ctx.call(ctx.trading.record_indicative_prices, task.operation_id, prices)
    result = await ctx.call(ctx.trading.check_chunk, task.operation_id, task.chunk)
    log.info(
        "credit.checked",
        operation_id=str(task.operation_id),
        chunk=task.chunk,
        status=result.status.value,
        replayed=result.replayed,
        redelivered=delivery.redelivered,
    )
