"""execution stage: place the net block order per asset at the locked quote, then settle
each chunk at the locked prices (or, after a failure, release its holds).

A venue that refuses or cannot fill a block fails the Operation (`execution_failed`) before
any Trader settles; settlement only starts once every block is filled (`FillsCompleted`).
"""

from __future__ import annotations

from decimal import Decimal

import structlog

from domain.operation import Operation
from domain.pricing import BlockFill, LockedQuote
from domain.statuses import OperationReason, OperationStatus, Side
from domain.venue import Quote, VenueError
from infra.bus import Delivery
from infra.bus.messages import ExecutionRequested
from workers.context import StageContext

log = structlog.get_logger("workers.execution")


async def execute(delivery: Delivery, ctx: StageContext) -> None:
    task = ExecutionRequested.model_validate_json(delivery.value)
    if task.action == "place_blocks":
        await _place_blocks(task, ctx)
        return
    assert task.chunk is not None, "settle and release tasks name their chunk"
    stage = ctx.trading.settle_chunk if task.action == "settle" else ctx.trading.release_chunk
    result = await ctx.call(stage, task.operation_id, task.chunk)
    log.info(
        f"chunk.{task.action}d",
        operation_id=str(task.operation_id),
        chunk=task.chunk,
        status=result.status.value,
        replayed=result.replayed,
        redelivered=delivery.redelivered,
    )


async def _place_blocks(task: ExecutionRequested, ctx: StageContext) -> None:
    operation: Operation = await ctx.call(ctx.trading.operation, task.operation_id)
    if operation.status is not OperationStatus.SETTLING or operation.failure:
        return
    for asset, order in sorted(operation.block_orders.items()):
        if asset in operation.fills:
            continue
        quote = _quote(operation, asset)
        try:
            fill = await ctx.venue.place_block(
                f"{operation.id}:{asset}", quote, Decimal(order["quantity"])
            )
        except VenueError as error:
            await ctx.call(
                ctx.trading.fail_operation,
                operation.id,
                OperationReason.EXECUTION_FAILED,
                f"{asset}: {error}",
            )
            log.warning(
                "execution.failed", operation_id=str(operation.id), asset=asset, error=str(error)
            )
            return
        block = BlockFill(asset, Side(order["side"]), fill.quantity, fill.price, fill.fill_id)
        await ctx.call(ctx.trading.record_fill, operation.id, block)
        log.info(
            "block.filled", operation_id=str(operation.id), asset=asset, quantity=str(fill.quantity)
        )


def _quote(operation: Operation, asset: str) -> Quote:
    locked = LockedQuote.from_dict(asset, operation.locked_prices[asset])
    return Quote(
        quote_id=locked.quote_id,
        asset=asset,
        quoted_currency=operation.quoted_currency,
        side=locked.quote_side,
        price=locked.price,
        quantity=locked.quote_quantity,
        quoted_at=locked.quoted_time,
        expires_at=locked.expiry,
    )
