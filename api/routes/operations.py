"""POST /strategies and the Operation requests: adapters onto the CommandService.

Each route builds its `domain.commands` command from the validated body, the same type the
`strategies.commands` consumer builds from a record, so HTTP and Kafka callers get the same
validation, the same ids (derived from platform and X-REQUEST-ID) and the same replays.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from fastapi import APIRouter, Response, status

from api import schemas
from api.auth import PlatformDep, SignedRoute
from api.deps import EngineDep
from api.errors import Problem
from api.idempotency import RequestIdDep
from domain import commands

router = APIRouter(tags=["strategies"], route_class=SignedRoute)

PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Invalid body, weights, amounts or X-REQUEST-ID."},
    401: {"model": Problem, "description": "Missing, wrong or expired signature."},
    403: {"model": Problem, "description": "The platform is disabled."},
    409: {"model": Problem, "description": "X-REQUEST-ID already used with another body."},
    413: {"model": Problem, "description": "Request body too large."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No such Strategy for this platform."}
}


async def _run(
    engine: EngineDep,
    platform: str,
    request_id: UUID,
    response: Response,
    command: commands.Command,
    *,
    created: int,
) -> dict[str, Any]:
    _kind, resource, made = await engine.commands.run(platform, request_id, command)
    response.status_code = created if made else status.HTTP_200_OK
    response.headers["X-REQUEST-ID"] = str(request_id)
    return resource


@router.post(
    "/strategies",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.Strategy,
    summary="Create a Strategy",
    responses={
        200: {
            "model": schemas.Strategy,
            "description": "Replay: the Strategy this X-REQUEST-ID made.",
        },
        **PROBLEMS,
    },
)
async def create_strategy(
    body: schemas.StrategyCreate,
    response: Response,
    platform: PlatformDep,
    request_id: RequestIdDep,
    engine: EngineDep,
) -> dict[str, Any]:
    return await _run(
        engine,
        platform.platform_id,
        request_id,
        response,
        # Without None fields: a body with no model hashes as it did before models existed,
        # so its replays still match.
        commands.CreateStrategy(body.model_dump(exclude_none=True)),
        created=status.HTTP_201_CREATED,
    )


@router.put(
    "/strategies/{strategy_id}/model",
    response_model=schemas.Strategy,
    summary="Set a Strategy's model (extension)",
    responses={
        200: {"model": schemas.Strategy, "description": "The Strategy with its new model."},
        **PROBLEMS,
        **NOT_FOUND,
    },
)
async def set_model(
    strategy_id: UUID,
    body: schemas.ModelUpdate,
    response: Response,
    platform: PlatformDep,
    request_id: RequestIdDep,
    engine: EngineDep,
) -> dict[str, Any]:
    """Records the next version of the model (every version is kept as an event). The same
    X-REQUEST-ID again answers the Strategy as it is now; with another body, a 409."""
    return await _run(
        engine,
        platform.platform_id,
        request_id,
        response,
        commands.SetModel(strategy_id, body.model_dump(exclude_none=True)),
        created=status.HTTP_200_OK,
    )


@router.put(
    "/strategies/{strategy_id}/policy",
    response_model=schemas.Strategy,
    summary="Set a Strategy's rebalancing policy (extension)",
    responses={
        200: {"model": schemas.Strategy, "description": "The Strategy with its new policy."},
        **PROBLEMS,
        **NOT_FOUND,
    },
)
async def set_policy(
    strategy_id: UUID,
    body: schemas.PolicyUpdate,
    response: Response,
    platform: PlatformDep,
    request_id: RequestIdDep,
    engine: EngineDep,
) -> dict[str, Any]:
    """Records the next version of the policy (every version is kept as an event): drift
    band, calendar, cooldown and cash buffer. A calendar needs the Strategy's model (409
    `model_required`); the scheduler then rebalances, once per period, the auto-rebalance
    Traders outside the band. The same X-REQUEST-ID again answers the Strategy as it is now."""
    return await _run(
        engine,
        platform.platform_id,
        request_id,
        response,
        commands.SetPolicy(strategy_id, body.model_dump(exclude_none=True)),
        created=status.HTTP_200_OK,
    )


@router.post(
    "/strategies/operations/{operation_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.Operation,
    summary="Cancel an Operation before its prices are locked (extension)",
    responses={
        200: {
            "model": schemas.Operation,
            "description": "Replay: the Operation as it is now.",
        },
        **PROBLEMS,
        404: {"model": Problem, "description": "No such Operation for this platform."},
        409: {
            "model": Problem,
            "description": "`operation_not_cancellable`: its prices are locked, or it ended "
            "(the detail names its status); or `idempotency_conflict`.",
        },
    },
)
async def cancel_operation(
    operation_id: UUID,
    response: Response,
    platform: PlatformDep,
    request_id: RequestIdDep,
    engine: EngineDep,
) -> dict[str, Any]:
    """Allowed while the Operation is validating or pricing and its prices are not locked.
    Answers 202 with the Operation: every hold it placed is then released, its Executions end
    `cancelled` and it ends `cancelled` (`cancelled_by_platform`), each told by webhook.
    Cancelling one already cancelled answers it as it is."""
    return await _run(
        engine,
        platform.platform_id,
        request_id,
        response,
        commands.CancelOperation(operation_id),
        created=status.HTTP_202_ACCEPTED,
    )


def _operation_route(
    path: str,
    command: type[commands.OperationCommand],
    model: type[schemas.Body],
    summary: str,
) -> None:
    async def request_operation(
        strategy_id: UUID,
        body: model,  # type: ignore[valid-type]
        response: Response,
        platform: PlatformDep,
        request_id: RequestIdDep,
        engine: EngineDep,
    ) -> dict[str, Any]:
        return await _run(
            engine,
            platform.platform_id,
            request_id,
            response,
            command(strategy_id, cast(schemas.Body, body).model_dump(exclude_none=True)),
            created=status.HTTP_202_ACCEPTED,
        )

    request_operation.__name__ = command.name
    # Annotations are strings here (postponed evaluation) and `model` is a local: give FastAPI
    # the class itself, or it could not tell which body this route expects.
    request_operation.__annotations__["body"] = model
    router.post(
        f"/strategies/{{strategy_id}}/{path}",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=schemas.Operation,
        summary=summary,
        responses={
            200: {
                "model": schemas.Operation,
                "description": "Replay: the Operation this X-REQUEST-ID made.",
            },
            **PROBLEMS,
            **NOT_FOUND,
        },
    )(request_operation)


_operation_route(
    "enroll",
    commands.Enroll,
    schemas.FundedOperationRequest,
    "Enroll participants (creates Traders)",
)
_operation_route(
    "top-up", commands.TopUp, schemas.FundedOperationRequest, "Top up existing Traders"
)
_operation_route(
    "partial-sell",
    commands.PartialSell,
    schemas.FundedOperationRequest,
    "Sell part of Traders' holdings",
)
_operation_route(
    "rebalance", commands.Rebalance, schemas.RebalanceRequest, "Rebalance Traders to new weights"
)
_operation_route(
    "liquidate", commands.Liquidate, schemas.LiquidateRequest, "Sell everything Traders hold"
)
