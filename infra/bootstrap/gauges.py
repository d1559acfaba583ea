"""The metrics that are state, not events (issue 20): read from the database every few
seconds by every process that runs an engine, into `infra.metrics.METRICS`'s gauges.

Operations by type and status come from the read models; the relay's and the read models'
lag are the events after their saved positions in the store's log order (counted up to a
cap: past it, the gauge says "at least"); webhook deliveries by status from their table.
A table not created yet reads as nothing, and a failed read leaves the last figures (the
next refresh tries again): metrics never stop a process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from infra.eventstore.notification_log import ApplicationNotificationLog, LogPosition
from infra.metrics import METRICS, Metrics
from projections.operations import OPERATIONS
from projections.schema import DEFAULT_SCHEMA, quoted
from projections.writer import DEFAULT_NAME as READ_MODELS

log = structlog.get_logger("infra.bootstrap.gauges")

#: Seconds between two refreshes.
REFRESH_S = 5.0
#: Events counted at most per lag (a count, not a scan of the whole log).
LAG_CAP = 100_000

_OPERATIONS = (
    f"SELECT type, status, count(*) AS n FROM {OPERATIONS.qualified(DEFAULT_SCHEMA)} "
    "GROUP BY type, status"
)
_POSITIONS = f"""
SELECT
    (SELECT ARRAY[tx_id, position] FROM relay_positions WHERE name = $1) AS relayed,
    (SELECT ARRAY[tx_id, position] FROM {quoted(DEFAULT_SCHEMA)}.projection_offsets
     WHERE projection = $2 ORDER BY tx_id DESC, position DESC LIMIT 1) AS projected
"""
_DELIVERIES = "SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status"


async def refresh(
    pool: asyncpg.Pool,
    notifications: ApplicationNotificationLog,
    call: Callable[..., Awaitable[Any]],
    relay_name: str,
    metrics: Metrics = METRICS,
) -> None:
    """One refresh of every gauge (each read on its own: one missing table skips only it)."""
    try:
        rows = await pool.fetch(_OPERATIONS)
        metrics.operations.clear()
        for row in rows:
            metrics.operations.labels(row["type"], row["status"]).set(row["n"])
    except asyncpg.UndefinedTableError:
        pass
    try:
        positions = await pool.fetchrow(_POSITIONS, relay_name, READ_MODELS)
    except asyncpg.UndefinedTableError:
        positions = None
    if positions is not None:
        relayed = LogPosition(*(positions["relayed"] or (0, 0)))
        projected = LogPosition(*(positions["projected"] or (0, 0)))
        metrics.relay_lag.set(await call(notifications.unpublished, relayed, LAG_CAP))
        metrics.projection_lag.set(await call(notifications.unpublished, projected, LAG_CAP))
    try:
        rows = await pool.fetch(_DELIVERIES)
        metrics.webhook_deliveries.clear()
        for row in rows:
            metrics.webhook_deliveries.labels(row["status"]).set(row["n"])
    except asyncpg.UndefinedTableError:
        pass


async def keep_fresh(
    stop: asyncio.Event,
    pool: asyncpg.Pool,
    notifications: ApplicationNotificationLog,
    call: Callable[..., Awaitable[Any]],
    relay_name: str,
    every: float = REFRESH_S,
) -> None:
    while not stop.is_set():
        try:
            await refresh(pool, notifications, call, relay_name)
        except Exception as error:  # an outage, or a bug: the figures wait for the next one
            log.warning("metrics.refresh_failed", error=repr(error))
        try:
            await asyncio.wait_for(stop.wait(), timeout=every)
        except TimeoutError:
            continue
