"""Placing an Operation's block orders at its locked quotes, and recording their fills.

Firm quotes live seconds (the simulated venue's live 10 s), so the pricing step places the
blocks itself the moment it has locked them, instead of waiting for its lock to travel the
relay to the blocks lane: under load that hop alone outlasted the quotes. The blocks-lane task
the lock also makes due stays the way back after a crash between the lock and the fills; both
paths are safe together, for the venue fills a client order id once and returns that fill to
any repeat, and `Operation.record_fill` keeps the first fill of each asset.

A venue that refuses or cannot fill a block fails the Operation (`execution_failed`) before any
Trader settles; settlement only starts once every block is filled (`FillsCompleted`).
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

import structlog

from domain.operation import Operation
from domain.pricing import BlockFill, LockedQuote
from domain.statuses import OperationReason, OperationStatus, Side
from domain.venue import Quote, VenueError
from workers.context import StageContext

log = structlog.get_logger("workers.blocks")


async def place_blocks(
    operation_id: UUID, ctx: StageContext, operation: Operation | None = None
) -> None:
    """`operation`: as the caller just saved it, to spare loading it again."""
    if operation is None:
        operation = await ctx.call(ctx.trading.operation, operation_id)
    if operation.status is not OperationStatus.SETTLING or operation.failure:
        return
    for asset, order in sorted(operation.block_orders.items()):
        if asset in operation.fills:
            continue
        try:
            fill = await ctx.venue.place_block(
                f"{operation.id}:{asset}", _quote(operation, asset), Decimal(order["quantity"])
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
