"""POST /strategies and the Operation requests: adapters onto the CommandService.

Each route builds its `domain.commands` command from the validated body, the same type the
`strategies.commands` consumer builds from a record, so HTTP and Kafka callers get the same
validation, the same ids (derived from platform and X-REQUEST-ID) and the same replays.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast
from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from api import schemas
from api.auth import PlatformDep, SignedRoute
from api.deps import EngineDep
from api.errors import Problem
from api.idempotency import RequestIdDep
from api.response_budget import ResponseBudgetDep, fit_page
from api.routes.reads import Page, Size
from domain import commands
from projections.previews import preview_page, preview_resource, preview_summary
from projections.queries import DEFAULT_SIZE

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


OPERATION_ROUTES: list[tuple[str, type[commands.OperationCommand], type[schemas.Body], str]] = [
    (
        "enroll",
        commands.Enroll,
        schemas.FundedOperationRequest,
        "Enroll participants (creates Traders)",
    ),
    ("top-up", commands.TopUp, schemas.FundedOperationRequest, "Top up existing Traders"),
    (
        "partial-sell",
        commands.PartialSell,
        schemas.FundedOperationRequest,
        "Sell part of Traders' holdings",
    ),
    ("rebalance", commands.Rebalance, schemas.RebalanceRequest, "Rebalance Traders to new weights"),
    ("liquidate", commands.Liquidate, schemas.LiquidateRequest, "Sell everything Traders hold"),
]
for _path, _command, _model, _summary in OPERATION_ROUTES:
    _operation_route(_path, _command, _model, _summary)

SummaryOnly = Annotated[
    Literal["true", "false"],
    Query(description="`true`: the summary only, no participants (exactly true or false)."),
]
PREVIEW_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Invalid body, weights, amounts, page or flag."},
    401: PROBLEMS[401],
    403: PROBLEMS[403],
    413: PROBLEMS[413],
    **NOT_FOUND,
}


class PreviewRoute(SignedRoute):
    """Signed, but no X-REQUEST-ID: a preview writes nothing (`SignedRoute.writes_nothing`)."""

    writes_nothing = True


def _preview_route(
    path: str,
    command: type[commands.OperationCommand],
    model: type[schemas.Body],
    summary: str,
) -> None:
    async def preview_operation(
        strategy_id: UUID,
        body: model,  # type: ignore[valid-type]
        platform: PlatformDep,
        engine: EngineDep,
        budget: ResponseBudgetDep,
        page: Page = 1,
        size: Size = DEFAULT_SIZE,
        summary_only: SummaryOnly = "false",
    ) -> dict[str, Any]:
        operation = command(strategy_id, cast(schemas.Body, body).model_dump(exclude_none=True))
        preview = commands.PreviewOperation(operation, summary_only == "true", page, size)
        found = await engine.commands.preview(platform.platform_id, preview)
        if preview.summary_only:
            return preview_resource(found, preview)
        return {
            "summary": preview_summary(found),
            **fit_page(preview_page(found, page, size), size, budget),
        }

    preview_operation.__name__ = f"preview_{command.name}"
    preview_operation.__annotations__["body"] = model
    router.add_api_route(
        f"/strategies/{{strategy_id}}/{path}/preview",
        preview_operation,
        methods=["POST"],
        response_model=schemas.OperationPreview,
        summary=f"Preview: {summary[0].lower()}{summary[1:]} (extension)",
        description="The same body as the request; no X-REQUEST-ID. Nothing is written: no "
        "Operation, no hold, no quote. Decided by the real credit check, float reservation "
        "and allotment at the venue's indicative prices now, so the real request, priced at "
        "the same prices, has the same legs and the same exclusions.",
        responses=PREVIEW_PROBLEMS,
        route_class_override=PreviewRoute,
    )


for _path, _command, _model, _summary in OPERATION_ROUTES:
    _preview_route(_path, _command, _model, _summary)
