"""Which pipeline roles the work in hand is waiting on, for `/health`.

A role is needed when there is work only it can move on: events the relay has not published,
published events the read models have not applied, Operations at a stage (validating needs
`credit-check`, pricing `pricing`, settling `execution`), webhook notifications due. The
questions are cheap (an index bound, a few rows, the active Operations), so a load balancer
may poll them every few seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from domain.statuses import OperationStatus
from infra.bus.topic_names import Topics, relay_position_name
from infra.eventstore.notification_log import ApplicationNotificationLog, LogPosition
from projections.operations import OPERATIONS
from projections.schema import DEFAULT_SCHEMA, quoted
from projections.writer import DEFAULT_NAME as READ_MODELS

if TYPE_CHECKING:
    from api.deps import Pipeline

#: Unpublished events are counted up to this many (an index range, bounded).
COUNT_CAP = 1000
STAGE_ROLES = {
    OperationStatus.VALIDATING.value: "credit-check",
    OperationStatus.PRICING.value: "pricing",
    OperationStatus.SETTLING.value: "execution",
}

_PENDING = f"""
SELECT
    ARRAY(SELECT DISTINCT status FROM {OPERATIONS.qualified(DEFAULT_SCHEMA)}
          WHERE status = ANY($1::text[])) AS stages,
    (SELECT ARRAY[tx_id, position] FROM relay_positions WHERE name = $2) AS relayed,
    (SELECT ARRAY[tx_id, position] FROM {quoted(DEFAULT_SCHEMA)}.projection_offsets
     WHERE projection = $3 ORDER BY tx_id DESC, position DESC LIMIT 1) AS projected,
    EXISTS (SELECT 1 FROM webhook_deliveries
            WHERE status = 'pending' AND next_attempt_at <= now()) AS webhooks_due
"""


async def needed_roles(pool: asyncpg.Pool, engine: Pipeline | None, prefix: str) -> dict[str, str]:
    """Role -> why it is needed now. Tables not created yet hold no work."""
    try:
        row = await pool.fetchrow(
            _PENDING, list(STAGE_ROLES), relay_position_name(Topics(prefix)), READ_MODELS
        )
    except asyncpg.UndefinedTableError:
        return {}
    assert row is not None
    relayed = LogPosition(*(row["relayed"] or (0, 0)))
    needed = {STAGE_ROLES[stage]: f"an Operation is {stage}" for stage in sorted(row["stages"])}
    if engine is not None:
        notifications = ApplicationNotificationLog(engine.trading)
        unpublished = await engine.call(notifications.unpublished, relayed, COUNT_CAP)
        if unpublished:
            more = "+" if unpublished == COUNT_CAP else ""
            needed["relay"] = f"{unpublished}{more} event(s) not yet published"
    # Positions in log order: the last one the relay saved against the furthest applied.
    if relayed > LogPosition(*(row["projected"] or (0, 0))):
        needed["projections"] = "published events not yet in the read models"
    if row["webhooks_due"]:
        needed["webhooks"] = "webhook notifications are due"
    return needed
