"""PATCH /strategies/traders/{trader_id}: the one mutable Trader field, idempotently."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Response

from api import schemas
from api.auth import PlatformDep, SignedRoute
from api.deps import EngineDep
from api.errors import Problem
from api.idempotency import RequestIdDep
from domain.commands import UpdateTrader

router = APIRouter(tags=["strategies"], route_class=SignedRoute)


@router.patch(
    "/strategies/traders/{trader_id}",
    response_model=schemas.Trader,
    summary="Change a Trader's auto_rebalance",
    responses={
        400: {"model": Problem, "description": "Invalid body or X-REQUEST-ID."},
        401: {"model": Problem, "description": "Missing, wrong or expired signature."},
        404: {"model": Problem, "description": "No such Trader for this platform."},
        409: {
            "model": Problem,
            "description": "X-REQUEST-ID already used by this platform for another request.",
        },
    },
)
async def update_trader(
    trader_id: UUID,
    body: schemas.TraderUpdate,
    response: Response,
    platform: PlatformDep,
    request_id: RequestIdDep,
    engine: EngineDep,
) -> Any:
    """The same X-REQUEST-ID again changes nothing and answers the Trader as it is now; the
    same id with another body, or already used for another request, is a 409."""
    command = UpdateTrader(trader_id, body.auto_rebalance)
    _kind, resource, _created = await engine.commands.run(platform.platform_id, request_id, command)
    response.headers["X-REQUEST-ID"] = str(request_id)
    return resource
