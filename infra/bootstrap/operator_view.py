"""The operator dashboard's snapshot (`api.deps.OperatorView`), gathered where every source
is at hand: the latest Operations and their exclusions from the read models, their chunks
and residual from the write side (the read models count Executions, not chunks), webhook
health from the delivery table, and float and lags from the gauges this process already
keeps fresh (`infra.bootstrap.gauges`; a gauge nobody filled reads as no series).

Viewers poll every second or so: one snapshot serves them all for `FRESH_S`, the
delivery counts (a scan of the table) are read every `WEBHOOKS_S`, and a terminal
Operation's chunks, which cannot move any more, are read from the store once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from prometheus_client import Gauge

from api.dashboard_data import (
    DeadLetter,
    Figure,
    OperationView,
    Snapshot,
    StageProgress,
    WebhookHealth,
)
from domain.operation import Operation
from infra.eventstore.store import PostgresTrading
from infra.metrics import METRICS, Metrics
from infra.postgres.webhooks_store import WebhookStore
from projections.dashboard import exclusions_by_reason, latest_operations

#: Seconds one snapshot serves every viewer.
FRESH_S = 1.0
#: Seconds between two counts of the webhook deliveries.
WEBHOOKS_S = 5.0
OPERATIONS_SHOWN = 12
DEAD_LETTERS_SHOWN = 20

Chunks = tuple[list[StageProgress], dict[str, str]]


class OperatorDashboard:
    def __init__(
        self,
        pool: asyncpg.Pool,
        trading: PostgresTrading,
        call: Callable[..., Awaitable[Any]],
        metrics: Metrics = METRICS,
    ) -> None:
        self.pool = pool
        self.trading = trading
        self.call = call
        self.metrics = metrics
        self.webhooks = WebhookStore(pool, None)  # reads only: no secret is opened
        self._lock = asyncio.Lock()
        self._last: tuple[float, Snapshot] | None = None
        self._health: tuple[float, WebhookHealth | None] = (float("-inf"), None)
        self._final: dict[str, Chunks] = {}

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= FRESH_S:
                self._last = (now, await self._take())
            return self._last[1]

    async def _take(self) -> Snapshot:
        try:
            operations = await latest_operations(self.pool, OPERATIONS_SHOWN)
        except asyncpg.UndefinedTableError:  # the read models' schema is not there yet
            operations = []
        pairs = [(o["platform_id"], o["id"]) for o in operations]
        exclusions = await exclusions_by_reason(self.pool, pairs) if pairs else {}
        chunks = await self._chunks(operations)
        return Snapshot(
            taken_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            operations=[
                _view(o, exclusions.get(o["id"], {}), chunks.get(o["id"], ([], {})))
                for o in operations
            ],
            webhooks=await self._webhook_health(),
            dead_letters=await self._dead_letters(),
            float_available=_series(self.metrics.float_available),
            consumer_lag=_series(self.metrics.consumer_lag),
            relay_lag=_value(self.metrics.relay_lag),
            projection_lag=_value(self.metrics.projection_lag),
        )

    async def _chunks(self, operations: list[dict[str, Any]]) -> dict[str, Chunks]:
        """Each Operation's chunks through check and settlement, and its residual, from the
        store: in one batched load for those still moving."""
        shown = {o["id"] for o in operations}
        self._final = {k: v for k, v in self._final.items() if k in shown}
        wanted = [UUID(o["id"]) for o in operations if o["id"] not in self._final]
        loaded = await self.call(self.trading.get_many, wanted) if wanted else {}
        found = dict(self._final)
        for aggregate in loaded.values():
            if not isinstance(aggregate, Operation):
                continue
            figures = _chunk_progress(aggregate)
            found[str(aggregate.id)] = figures
            if aggregate.status.terminal:
                self._final[str(aggregate.id)] = figures
        return found

    async def _webhook_health(self) -> WebhookHealth | None:
        read_at, health = self._health
        if time.monotonic() - read_at >= WEBHOOKS_S:
            try:
                health = WebhookHealth(**await self.webhooks.health())
            except asyncpg.UndefinedTableError:
                health = None
            self._health = (time.monotonic(), health)
        return health

    async def _dead_letters(self) -> list[DeadLetter]:
        try:
            found = await self.webhooks.dead_letters(DEAD_LETTERS_SHOWN)
        except asyncpg.UndefinedTableError:
            return []
        fields = DeadLetter.model_fields
        return [DeadLetter(**{k: v for k, v in d.items() if k in fields}) for d in found]


def _chunk_progress(operation: Operation) -> Chunks:
    stages = list(operation.chunks.values())
    total = operation.chunk_count
    checked = sum(stage != "planned" for stage in stages)
    settled = sum(stage in ("settled", "released") for stage in stages)
    progress = [
        StageProgress(stage="check", done=checked, total=total),
        StageProgress(stage="settlement", done=settled, total=total),
    ]
    return progress, dict(operation.residual)


def _view(operation: dict[str, Any], exclusions: dict[str, int], chunks: Chunks) -> OperationView:
    stages, residual = chunks
    return OperationView(
        id=operation["id"],
        platform_id=operation["platform_id"],
        strategy_id=operation["strategy_id"],
        type=operation["type"],
        status=operation["status"],
        status_reason=operation["status_reason"],
        participant_count=operation["participant_count"],
        counts=operation["counts"],
        stages=stages,
        exclusions=exclusions,
        locked_prices=operation["locked_prices"],
        residual=residual,
        created_at=operation["created_at"],
        updated_at=operation["updated_at"],
    )


def _series(gauge: Gauge) -> list[Figure]:
    """Every series of `gauge`, in the order of their labels."""
    samples = [sample for family in gauge.collect() for sample in family.samples]
    samples.sort(key=lambda sample: sorted(sample.labels.items()))
    return [Figure(labels=dict(sample.labels), value=sample.value) for sample in samples]


def _value(gauge: Gauge) -> float:
    series = _series(gauge)
    return series[0].value if series else 0.0
