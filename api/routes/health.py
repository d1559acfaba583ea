"""GET /health: can this process reach its database and its broker, and is the pipeline
moving: does every role that pending work waits on have a live process, and is it making
progress (not stuck: see `api.pipeline_state.quiet_for`)?

Load balancers and the e2e tests poll it, so it answers quickly and never fails itself:
every probe has a short timeout and any error becomes `ok: false` with a 503. `roles` tells,
per pipeline role, how many processes are alive and when one last made progress (from the
heartbeats every role-running process writes, `infra.postgres.heartbeats`), and for
`projections` how
many events the read models passed over as poisoned (`projections.poisoned`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, Field

from api.pipeline_state import needed_work, quiet_for
from infra.bus.kafka_reach import reach
from infra.logging import redact_text
from infra.postgres.heartbeats import ROLES, role_states
from infra.settings import KafkaSection
from projections.poisoned import count_unresolved

PROBE_TIMEOUT_S = 2.0

router = APIRouter(tags=["operations"])


Mode = Literal["embedded", "external"]


class CheckResult(BaseModel):
    ok: bool
    mode: Mode
    latency_ms: float | None = None
    error: str | None = None


class RoleReport(BaseModel):
    live_processes: int = Field(description="Processes running the role, seen in the last 15 s.")
    last_seen: datetime | None = Field(description="The latest heartbeat of any of them.")
    last_progress: datetime | None = Field(
        description="When one of them last handled a message (null: none since it started)."
    )
    needed_for: str | None = Field(
        description="The pending work waiting on this role, if any (null: nothing now)."
    )
    stuck: bool = Field(
        default=False,
        description="Live, but none of its processes made progress while work waited on it "
        "for `STRATEGIES_STUCK_AFTER_S` (the report is then degraded).",
    )
    poisoned_events: int | None = Field(
        default=None,
        description="`projections` only: events the read models could not apply and passed "
        "over (poisoned, or parked behind one), until retried with `strategies projections "
        "poisoned --retry`. They do not make the report degraded: the pipeline moves on.",
    )


class HealthReport(BaseModel):
    status: Literal["ok", "degraded"]
    checks: dict[str, CheckResult]
    roles: dict[str, RoleReport] = Field(
        description="Every pipeline role: who runs it and whether pending work waits on it."
    )


@router.get(
    "/health",
    summary="Database and broker reachability, pipeline roles alive",
    description="`degraded` (503) when the database or the broker is unreachable, or when "
    "pending work waits on a role that no live process runs, or whose processes have made no "
    "progress for `STRATEGIES_STUCK_AFTER_S` while it waited (the `pipeline` check names it).",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": HealthReport}},
)
async def health(request: Request, response: Response) -> HealthReport:
    state = request.app.state
    mode: Mode = "embedded" if state.settings.kafka.bootstrap_servers is None else "external"
    roles: dict[str, RoleReport] = {}
    database, broker, pipeline = await asyncio.gather(
        _probe(_select_one(state.db_pool), "embedded" if state.embedded_db else "external"),
        _probe_broker(state.settings.kafka),
        _probe(_pipeline(state, roles), mode),
    )
    checks = {"database": database, "broker": broker, "pipeline": pipeline}
    healthy = all(check.ok for check in checks.values())
    if not healthy:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return HealthReport(status="ok" if healthy else "degraded", checks=checks, roles=roles)


class RoleMissingError(Exception):
    """Raised when pending work waits on roles that no live process runs, or whose
    processes have made no progress for `STRATEGIES_STUCK_AFTER_S`."""


async def _pipeline(state: Any, report: dict[str, RoleReport]) -> None:
    """Fill `report` per role; fails naming every needed role without a live process and
    every one stuck (live, but no progress while work waited on it)."""
    needed = await needed_work(state.db_pool, state.engine, state.settings.topic_prefix)
    seen = await role_states(state.db_pool)
    poisoned_events = await count_unresolved(state.db_pool)
    now = datetime.now(UTC)
    stuck: list[str] = []
    for role in ROLES:
        role_state = seen.get(role)
        need = needed.get(role)
        quiet = None if need is None else quiet_for(need, role_state, now, _stuck_after(state))
        if quiet is not None:
            stuck.append(f"{role} is stuck ({need.why if need else ''}; no progress for {quiet} s)")
        report[role] = RoleReport(
            live_processes=role_state.live_processes if role_state else 0,
            last_seen=role_state.last_seen if role_state else None,
            last_progress=role_state.last_progress if role_state else None,
            needed_for=need.why if need else None,
            poisoned_events=poisoned_events if role == "projections" else None,
            stuck=quiet is not None,
        )
    missing = [
        f"{role} ({need.why})" for role, need in needed.items() if not report[role].live_processes
    ]
    problems = (["no live process runs " + "; ".join(missing)] if missing else []) + stuck
    if problems:
        raise RoleMissingError("; ".join(problems))


def _stuck_after(state: Any) -> float:
    return float(state.settings.stuck_after_s)


async def _select_one(pool: asyncpg.Pool) -> None:
    async with pool.acquire(timeout=PROBE_TIMEOUT_S) as conn:
        await conn.fetchval("SELECT 1")


async def _probe_broker(kafka: KafkaSection) -> CheckResult:
    if kafka.bootstrap_servers is None:
        return CheckResult(ok=True, mode="embedded")  # the in-process bus is always there
    # A broker that answers a metadata request serves; asked with the workers' own TLS and
    # SASL options, so a wrong password shows here too, named.
    return await _probe(
        reach(kafka.bootstrap_servers, kafka.connection, PROBE_TIMEOUT_S), "external"
    )


async def _probe(check: Awaitable[None], mode: Mode) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await check
    except Exception as exc:  # any failure is the answer, not an error of ours
        detail = redact_text(str(exc))[:500] or "no detail"
        return CheckResult(ok=False, mode=mode, error=f"{type(exc).__name__}: {detail}")
    latency_ms = round((time.perf_counter() - started) * 1000, 1)
    return CheckResult(ok=True, mode=mode, latency_ms=latency_ms)
