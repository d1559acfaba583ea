"""Which pipeline roles the work in hand is waiting on, for `/health`.

A role is needed when there is work only it can move on: events the relay has not published,
published events the read models have not applied, Operations at a stage (validating needs
`credit-check`, pricing `pricing`, settling `execution`), webhook notifications due. The
questions are cheap (an index bound, a few rows, the active Operations), so a load balancer
may poll them every few seconds.

Where it is known, a need says since when the work has waited: the Operation at the stage
that moved least recently, the webhook notification due first. `/health` calls a role stuck
when that is long ago and none of its processes made progress meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
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
    from infra.postgres.heartbeats import RoleState

#: Unpublished events are counted up to this many (an index range, bounded).
COUNT_CAP = 1000
STAGE_ROLES = {
    OperationStatus.VALIDATING.value: "credit-check",
    OperationStatus.PRICING.value: "pricing",
    OperationStatus.SETTLING.value: "execution",
}

_PENDING = f"""
SELECT
    ARRAY(SELECT status FROM {OPERATIONS.qualified(DEFAULT_SCHEMA)}
          WHERE status = ANY($1::text[]) GROUP BY status ORDER BY status) AS stages,
    ARRAY(SELECT min(updated_at) FROM {OPERATIONS.qualified(DEFAULT_SCHEMA)}
          WHERE status = ANY($1::text[]) GROUP BY status ORDER BY status) AS stages_since,
    (SELECT ARRAY[tx_id, position] FROM relay_positions WHERE name = $2) AS relayed,
    (SELECT ARRAY[tx_id, position] FROM {quoted(DEFAULT_SCHEMA)}.projection_offsets
     WHERE projection = $3 ORDER BY tx_id DESC, position DESC LIMIT 1) AS projected,
    (SELECT min(next_attempt_at) FROM webhook_deliveries
     WHERE status = 'pending' AND next_attempt_at <= now()) AS webhooks_due
"""


@dataclass(frozen=True)
class Need:
    """Why a role is needed now, and since when the work has waited (None: not known)."""

    why: str
    since: datetime | None = None


async def needed_roles(pool: asyncpg.Pool, engine: Pipeline | None, prefix: str) -> dict[str, str]:
    """Role -> why it is needed now. Tables not created yet hold no work."""
    return {role: need.why for role, need in (await needed_work(pool, engine, prefix)).items()}


async def needed_work(pool: asyncpg.Pool, engine: Pipeline | None, prefix: str) -> dict[str, Need]:
    """Role -> why it is needed now and since when. Tables not created yet hold no work."""
    try:
        row = await pool.fetchrow(
            _PENDING, list(STAGE_ROLES), relay_position_name(Topics(prefix)), READ_MODELS
        )
    except asyncpg.UndefinedTableError:
        return {}
    assert row is not None
    relayed = LogPosition(*(row["relayed"] or (0, 0)))
    needed = {
        STAGE_ROLES[stage]: Need(f"an Operation is {stage}", since)
        for stage, since in zip(row["stages"], row["stages_since"], strict=True)
    }
    if engine is not None:
        notifications = ApplicationNotificationLog(engine.trading)
        unpublished = await engine.call(notifications.unpublished, relayed, COUNT_CAP)
        if unpublished:
            more = "+" if unpublished == COUNT_CAP else ""
            needed["relay"] = Need(f"{unpublished}{more} event(s) not yet published")
    # Positions in log order: the last one the relay saved against the furthest applied.
    if relayed > LogPosition(*(row["projected"] or (0, 0))):
        needed["projections"] = Need("published events not yet in the read models")
    if row["webhooks_due"] is not None:
        needed["webhooks"] = Need("webhook notifications are due", row["webhooks_due"])
    return needed


def quiet_for(need: Need, role: RoleState | None, now: datetime, after_s: float) -> float | None:
    """Seconds a needed role with live processes has made no progress, when that is stuck:
    the work has waited at least `after_s` (or since when is not known) and none of its
    processes made progress or started within `after_s`. None: not stuck (or not live,
    which `/health` reports on its own)."""
    if role is None or not role.live_processes:
        return None
    after = timedelta(seconds=after_s)
    if need.since is not None and now - need.since < after:
        return None
    moments = [m for m in (role.last_progress, role.last_started) if m is not None]
    latest = max(moments, default=None)
    if latest is not None and now - latest < after:
        return None
    return round((now - latest).total_seconds()) if latest is not None else after_s
