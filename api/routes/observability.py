"""What an orchestrator, Prometheus and an integrator ask `strategies serve` (issue 20):
`/health/live` (the process answers), `/health/ready` (its database answers and its
pipeline started), `/metrics` (Prometheus text, behind the admin token: it names platforms'
figures) and `/asyncapi.json` (the topics' contract, public like `/openapi.json`)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel

from api.errors import Problem
from api.routes.admin import AdminRoute, require_admin
from infra.bus.asyncapi import asyncapi_document
from infra.metrics import CONTENT_TYPE, METRICS

router = APIRouter(tags=["operations"])
#: `/metrics` is the admin's: its token is checked before anything else (`AdminRoute`).
admin_router = APIRouter(tags=["operations"], route_class=AdminRoute)


class Probe(BaseModel):
    status: Literal["ok", "not_ready"]
    reason: str = ""


@router.get(
    "/health/live",
    response_model=Probe,
    summary="Liveness: the process answers (no dependency is asked)",
)
async def live() -> Probe:
    return Probe(status="ok")


@router.get(
    "/health/ready",
    response_model=Probe,
    summary="Readiness: the database answers and the pipeline started",
    responses={status.HTTP_503_SERVICE_UNAVAILABLE: {"model": Probe}},
)
async def ready(request: Request, response: Response) -> Probe:
    """503 `not_ready` with the reason while the engine has not started (or could not) or
    is not ready itself (`Engine.readiness`, as a worker's probe asks it: the database
    answers within 2 s, each Kafka subscription holds a partition): a balancer should send
    it no traffic yet."""
    engine = request.app.state.engine
    reason = "the pipeline has not started" if engine is None else await engine.readiness()
    if reason:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Probe(status="not_ready", reason=reason)
    return Probe(status="ok")


@admin_router.get(
    "/metrics",
    summary="Prometheus metrics of this process (admin token)",
    dependencies=[Depends(require_admin)],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."},
        401: {"model": Problem, "description": "Missing or wrong admin token."},
        403: {"model": Problem, "description": "Admin API switched off."},
    },
)
async def metrics() -> Response:
    return Response(METRICS.render(), media_type=CONTENT_TYPE)


@router.get(
    "/asyncapi.json",
    summary="The AsyncAPI 3 document of the Kafka topics (extension)",
    response_model=dict[str, Any],
)
async def asyncapi(request: Request) -> dict[str, Any]:
    """Every topic this installation publishes or consumes, named with its topic prefix,
    with the payload schemas the code reads and writes (the same as `strategies asyncapi`)."""
    return asyncapi_document(request.app.state.settings.topic_prefix, request.app.version)
