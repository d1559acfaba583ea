"""GET /health: can this process reach its database and its broker right now?

Load balancers and the e2e tests poll it, so it answers quickly and never fails itself:
every probe has a short timeout and any error becomes `ok: false` with a 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Literal

import asyncpg
from aiokafka.client import AIOKafkaClient  # type: ignore[import-untyped]
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from infra.logging import redact_text

PROBE_TIMEOUT_S = 2.0

router = APIRouter(tags=["operations"])


class CheckResult(BaseModel):
    ok: bool
    mode: Literal["embedded", "external"]
    latency_ms: float | None = None
    error: str | None = None


class HealthReport(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, CheckResult]


@router.get(
    "/health",
    summary="Database and broker reachability",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": HealthReport}},
)
async def health(request: Request, response: Response) -> HealthReport:
    state = request.app.state
    database, broker = await asyncio.gather(
        _probe(_select_one(state.db_pool), "embedded" if state.embedded_db else "external"),
        _probe_broker(state.settings.kafka.bootstrap_servers),
    )
    checks = {"database": database, "broker": broker}
    healthy = all(check.ok for check in checks.values())
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthReport(status="ok" if healthy else "degraded", checks=checks)


async def _select_one(pool: asyncpg.Pool) -> None:
    async with pool.acquire(timeout=PROBE_TIMEOUT_S) as conn:
        await conn.fetchval("SELECT 1")


async def _probe_broker(bootstrap_servers: str | None) -> CheckResult:
    if bootstrap_servers is None:
        return CheckResult(ok=True, mode="embedded")  # the in-process bus is always there
    return await _probe(_fetch_metadata(bootstrap_servers), "external")


async def _fetch_metadata(bootstrap_servers: str) -> None:
    # bootstrap() connects and reads cluster metadata: a broker that answers that serves.
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=int(PROBE_TIMEOUT_S * 1000)
    )
    try:
        await client.bootstrap()
    finally:
        await client.close()


async def _probe(check: Awaitable[None], mode: Literal["embedded", "external"]) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await check
    except Exception as exc:  # any failure is the answer, not an error of ours
        detail = redact_text(str(exc))[:200] or "no detail"
        return CheckResult(ok=False, mode=mode, error=f"{type(exc).__name__}: {detail}")
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return CheckResult(ok=True, mode=mode, latency_ms=latency_ms)
