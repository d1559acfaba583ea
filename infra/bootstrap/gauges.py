"""The metrics that are state, not events (issue 20): read every few seconds by every
process that runs an engine, into `infra.metrics.METRICS`'s gauges.

From the database, the same figures in every process (a dashboard takes their max):
Operations by type and status and their chunks in flight from the read models; the relay's
and the read models' lag, the events after their saved positions in the store's log order
(counted up to a cap: past it, the gauge says "at least"); webhook deliveries by status
from their table; the float each platform has available, from its accounts in the event
store. This process's own (a dashboard sums them): the consumer lag of the Kafka partitions
it holds and its database pools' connections.

A table not created yet reads as nothing, and a failed read leaves the last figures (the
next refresh tries again): metrics never stop a process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from domain import ids
from domain.catalogue import FIAT_PRECISION
from domain.float_account import FloatAccount
from domain.statuses import OperationStatus
from infra.bus.kafka_lag import PartitionLag
from infra.eventstore.notification_log import ApplicationNotificationLog, LogPosition
from infra.eventstore.store import PostgresTrading
from infra.metrics import METRICS, Metrics
from projections.operations import OPERATIONS
from projections.schema import DEFAULT_SCHEMA, quoted
from projections.strategies import STRATEGIES
from projections.writer import DEFAULT_NAME as READ_MODELS

log = structlog.get_logger("infra.bootstrap.gauges")

#: Seconds between two refreshes.
REFRESH_S = 5.0
#: Events counted at most per lag (a count, not a scan of the whole log).
LAG_CAP = 100_000

#: (in use, idle) connections of one pool, now.
PoolFigures = Callable[[], tuple[int, int]]

_OPERATIONS = (
    f"SELECT type, status, count(*) AS n FROM {OPERATIONS.qualified(DEFAULT_SCHEMA)} "
    "GROUP BY type, status"
)
# A running Operation's chunks are all handed to the check at once, and to settlement once
# its blocks are placed; rows projected before chunks were counted have none.
_CHUNKS = f"""
SELECT
    coalesce(sum(chunk_count - chunks_checked) FILTER (WHERE status = $1), 0) AS check,
    coalesce(sum(chunk_count - chunks_settled) FILTER (WHERE status = $2), 0) AS settle
FROM {OPERATIONS.qualified(DEFAULT_SCHEMA)}
WHERE status IN ($1, $2) AND chunk_count IS NOT NULL
"""
_POSITIONS = f"""
SELECT
    (SELECT ARRAY[tx_id, position] FROM relay_positions WHERE name = $1) AS relayed,
    (SELECT ARRAY[tx_id, position] FROM {quoted(DEFAULT_SCHEMA)}.projection_offsets
     WHERE projection = $2 ORDER BY tx_id DESC, position DESC LIMIT 1) AS projected
"""
_DELIVERIES = "SELECT status, count(*) AS n FROM webhook_deliveries GROUP BY status"
# Platforms registered, and those with Strategies (a float can be funded before either).
_PLATFORMS = (
    "SELECT platform_id FROM platforms UNION "
    f"SELECT DISTINCT platform_id FROM {STRATEGIES.qualified(DEFAULT_SCHEMA)}"
)


@dataclass(frozen=True)
class GaugeSources:
    """Where one process's gauges read from."""

    pool: asyncpg.Pool
    trading: PostgresTrading
    #: The engine's domain call (a thread, retried on conflicts).
    call: Callable[..., Awaitable[Any]]
    relay_name: str
    #: The lag of this process's Kafka partitions; None on the in-process bus.
    consumer_lags: Callable[[], Awaitable[list[PartitionLag]]] | None = None
    #: This process's database pools by name (the dict may grow after the start).
    pools: Mapping[str, PoolFigures] = field(default_factory=dict)


async def refresh(sources: GaugeSources, metrics: Metrics = METRICS) -> None:
    """One refresh of every gauge (each read on its own: one failing skips only it)."""
    for read in (_operations, _chunks, _lags, _deliveries, _float, _consumers):
        try:
            await read(sources, metrics)
        except asyncpg.UndefinedTableError:
            pass
        except Exception as error:  # an outage, or a bug: the figures wait for the next one
            log.warning("metrics.refresh_failed", gauge=read.__name__, error=repr(error))
    _pools(sources, metrics)


async def keep_fresh(
    stop: asyncio.Event, sources: GaugeSources, every: float | None = None
) -> None:
    """Refresh every `every` seconds (`REFRESH_S`, read now: a test may shorten it)."""
    while not stop.is_set():
        await refresh(sources)
        try:
            await asyncio.wait_for(stop.wait(), timeout=every or REFRESH_S)
        except TimeoutError:
            continue


async def _operations(sources: GaugeSources, metrics: Metrics) -> None:
    rows = await sources.pool.fetch(_OPERATIONS)
    metrics.operations.clear()
    for row in rows:
        metrics.operations.labels(row["type"], row["status"]).set(row["n"])


async def _chunks(sources: GaugeSources, metrics: Metrics) -> None:
    row = await sources.pool.fetchrow(
        _CHUNKS, OperationStatus.VALIDATING.value, OperationStatus.SETTLING.value
    )
    assert row is not None  # an aggregate without GROUP BY: one row
    metrics.chunks_in_flight.labels("check").set(row["check"])
    metrics.chunks_in_flight.labels("settle").set(row["settle"])


async def _lags(sources: GaugeSources, metrics: Metrics) -> None:
    positions = await sources.pool.fetchrow(_POSITIONS, sources.relay_name, READ_MODELS)
    assert positions is not None
    relayed = LogPosition(*(positions["relayed"] or (0, 0)))
    projected = LogPosition(*(positions["projected"] or (0, 0)))
    notifications = ApplicationNotificationLog(sources.trading)
    metrics.relay_lag.set(await sources.call(notifications.unpublished, relayed, LAG_CAP))
    metrics.projection_lag.set(await sources.call(notifications.unpublished, projected, LAG_CAP))


async def _deliveries(sources: GaugeSources, metrics: Metrics) -> None:
    rows = await sources.pool.fetch(_DELIVERIES)
    metrics.webhook_deliveries.clear()
    for row in rows:
        metrics.webhook_deliveries.labels(row["status"]).set(row["n"])


async def _float(sources: GaugeSources, metrics: Metrics) -> None:
    platforms = [row["platform_id"] for row in await sources.pool.fetch(_PLATFORMS)]
    accounts = await sources.call(float_accounts, sources.trading, platforms)
    metrics.float_available.clear()
    for account in accounts:
        # A metric, not a ledger: the one place a Decimal becomes a float.
        metrics.float_available.labels(account.platform_id, account.currency).set(
            float(account.available)
        )


def float_accounts(trading: PostgresTrading, platforms: Sequence[str]) -> list[FloatAccount]:
    """The float accounts these platforms have, in any currency (one query)."""
    wanted = [ids.float_account_id(p, c) for p in platforms for c in FIAT_PRECISION]
    found = trading.get_many(wanted).values() if wanted else []
    return [account for account in found if isinstance(account, FloatAccount)]


async def _consumers(sources: GaugeSources, metrics: Metrics) -> None:
    if sources.consumer_lags is None:
        return
    lags = await sources.consumer_lags()
    metrics.consumer_lag.clear()  # a partition handed to another process is its figure now
    for lag in lags:
        metrics.consumer_lag.labels(lag.group, lag.topic, str(lag.partition)).set(lag.lag)


def _pools(sources: GaugeSources, metrics: Metrics) -> None:
    for name, figures in list(sources.pools.items()):
        try:
            in_use, idle = figures()
        except Exception as error:  # a pool closing: skip it this time
            log.warning("metrics.pool_failed", pool=name, error=repr(error))
            continue
        metrics.db_pool_connections.labels(name, "in_use").set(in_use)
        metrics.db_pool_connections.labels(name, "idle").set(idle)


def asyncpg_figures(pool: asyncpg.Pool) -> PoolFigures:
    def figures() -> tuple[int, int]:
        idle = pool.get_idle_size()
        return pool.get_size() - idle, idle

    return figures
