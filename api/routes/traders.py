"""PATCH /strategies/traders/{trader_id}: the one mutable Trader field, idempotently."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response

from api import schemas
from api.auth import PlatformDep, SignedRoute, path_with_query
from api.deps import EngineDep
from api.errors import Problem
from api.idempotency import RequestIdDep, fingerprint, recall, remember
from workers.representations import trader_resource

router = APIRouter(tags=["strategies"], route_class=SignedRoute)


@router.patch(
    "/strategies/traders/{trader_id}",
    response_model=schemas.Trader,
    summary="Change a Trader's auto_rebalance",
    responses={
        400: {"model": Problem, "description": "Invalid body or X-REQUEST-ID."},
        401: {"model": Problem, "description": "Missing, wrong or expired signature."},
        404: {"model": Problem, "description": "No such Trader for this platform."},
        409: {"model": Problem, "description": "X-REQUEST-ID already used with another body."},
    },
)
async def update_trader(
    trader_id: UUID,
    body: schemas.TraderUpdate,
    request: Request,
    response: Response,
    platform: PlatformDep,
    request_id: RequestIdDep,
    engine: EngineDep,
) -> Any:
    """A replay of the same X-REQUEST-ID answers what the first call answered; the same id
    with another body is refused before anything changes."""
    request_print = fingerprint("PATCH", path_with_query(request), await request.body())
    stored = await recall(engine.pool, platform.platform_id, request_id, request_print)
    if stored is not None:
        response.status_code = stored.status_code
        return stored.body
    trader = await engine.call(
        engine.trading.change_auto_rebalance, platform.platform_id, trader_id, body.auto_rebalance
    )
    status, answer, _replayed = await remember(
        engine.pool, platform.platform_id, request_id, request_print, 200, trader_resource(trader)
    )
    response.status_code = status
    return answer
