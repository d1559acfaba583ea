"""execution stage: settle each chunk at the locked prices (or, after a failure, release its
holds), and place any block order the pricing step has not (see `workers.blocks`).
"""

from __future__ import annotations

import structlog

from infra.bus import Delivery
from infra.bus.messages import ExecutionRequested
from infra.tracing import annotate
from workers.blocks import place_blocks
from workers.context import StageContext

log = structlog.get_logger("workers.execution")


async def execute(delivery: Delivery, ctx: StageContext) -> None:
    task = ExecutionRequested.model_validate_json(delivery.value)
    annotate("strategies.action", task.action)
    if task.action == "place_blocks":
        await place_blocks(task.operation_id, ctx)
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
