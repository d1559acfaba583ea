"""GET endpoints: lists and single objects, read only from the projections.

A GET of an Operation, Strategy or Trader that the projections have not caught up with yet
answers from the event store instead of 404 (read-your-writes after a POST).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, cast
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from api import schemas
from api.auth import PlatformDep, SignedRoute
from api.deps import EngineDep, Pipeline
from api.errors import Problem, ProblemError
from api.response_budget import ResponseBudgetDep, fit_page
from domain.operation import Operation
from domain.statuses import TraderStatus
from domain.strategy import Strategy
from domain.trader import Trader
from projections import queries
from projections.drift import drift_summary
from projections.filters import (
    EXECUTION_FILTERS,
    OPERATION_FILTERS,
    STRATEGY_FILTERS,
    TRADER_FILTERS,
    Filter,
)
from projections.representations import operation_resource, strategy_resource, trader_resource

router = APIRouter(tags=["reads"], route_class=SignedRoute)

#: No list has this many pages, and (page - 1) * size must fit PostgreSQL's 64-bit OFFSET: an
#: unbounded page (a fuzzed 2**63) failed in the driver with a 500 instead of a 400.
MAX_PAGE = 1_000_000_000
Page = Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number.")]
Size = Annotated[int, Query(ge=1, le=queries.MAX_SIZE, description="Items per page (max 200).")]
AUTH: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Invalid filter or page."},
    401: {"model": Problem, "description": "Missing, wrong or expired signature."},
    403: {"model": Problem, "description": "The platform is disabled."},
}
MISSING: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Not found (or another platform's)."}
}


@dataclass(frozen=True)
class ListQuery:
    """A list request's query: the filters given (by their `projections.queries` keyword)
    and the page asked for."""

    filters: dict[str, Any]
    page: int
    size: int


def _list_query(declared: Sequence[Filter]) -> Any:
    """A dependency reading the `declared` filters, `page` and `size` from the query string.

    FastAPI validates and documents each parameter of its signature, and the route class
    refuses any other (`unknown_filter`), so the signature is built from the declarations.
    """

    def read(page: int, size: int, **given: Any) -> ListQuery:
        return ListQuery({k: v for k, v in given.items() if v is not None}, page, size)

    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(f.name, keyword, default=None, annotation=_annotation(f))
        for f in declared
    ]
    parameters.append(inspect.Parameter("page", keyword, default=1, annotation=Page))
    parameters.append(
        inspect.Parameter("size", keyword, default=queries.DEFAULT_SIZE, annotation=Size)
    )
    read.__signature__ = inspect.Signature(parameters, return_annotation=ListQuery)  # type: ignore[attr-defined]
    return Depends(read)


def _annotation(declared: Filter) -> Any:
    kind: Any = cast(Any, Literal)[declared.choices] if declared.choices else declared.kind
    query = Query(
        alias=declared.query or None,
        max_length=declared.max_length,
        pattern=declared.pattern,
        description=declared.description or None,
    )
    return Annotated[kind | None, query]


TraderQuery = Annotated[ListQuery, _list_query(TRADER_FILTERS)]
OperationQuery = Annotated[ListQuery, _list_query(OPERATION_FILTERS)]
ExecutionQuery = Annotated[ListQuery, _list_query(EXECUTION_FILTERS)]
StrategyQuery = Annotated[ListQuery, _list_query(STRATEGY_FILTERS)]


def _not_found(kind: str, identifier: UUID) -> ProblemError:
    return ProblemError(404, f"{kind}_not_found", f"{kind} {identifier} does not exist")


_RESOURCES: dict[type[Any], tuple[str, Callable[[Any], dict[str, Any]]]] = {
    Operation: ("operation", operation_resource),
    Trader: ("trader", trader_resource),
    Strategy: ("strategy", strategy_resource),
}


async def _written(
    engine: Pipeline, platform_id: str, identifier: UUID, kind: type[Any]
) -> dict[str, Any]:
    """Read-your-writes: an id the projections have not reached yet answers from the event
    store (another platform's, or a Trader whose enrollment has not settled, stays 404)."""
    name, resource = _RESOURCES[kind]
    written = await engine.call(engine.trading.find, identifier, kind)
    if (
        written is None
        or written.platform_id != platform_id
        or (isinstance(written, Trader) and written.status is TraderStatus.PENDING)
    ):
        raise _not_found(name, identifier)
    return resource(written)


@router.get(
    "/strategies/operations",
    response_model=schemas.OperationPage,
    summary="List Operations",
    responses=AUTH,
)
async def list_operations(
    platform: PlatformDep,
    engine: EngineDep,
    budget: ResponseBudgetDep,
    query: OperationQuery,
) -> dict[str, Any]:
    found = await queries.list_operations(
        engine.pool, platform.platform_id, page=query.page, size=query.size, **query.filters
    )
    return fit_page(found, query.size, budget)


@router.get(
    "/strategies/operations/{operation_id}",
    response_model=schemas.Operation,
    summary="Get an Operation",
    responses={**AUTH, **MISSING},
)
async def get_operation(
    operation_id: UUID, platform: PlatformDep, engine: EngineDep
) -> dict[str, Any]:
    found = await queries.get_operation(engine.pool, platform.platform_id, operation_id)
    return found or await _written(engine, platform.platform_id, operation_id, Operation)


@router.get(
    "/strategies/executions",
    response_model=schemas.ExecutionPage,
    summary="List Executions",
    responses=AUTH,
)
async def list_executions(
    platform: PlatformDep,
    engine: EngineDep,
    budget: ResponseBudgetDep,
    query: ExecutionQuery,
) -> dict[str, Any]:
    found = await queries.list_executions(
        engine.pool, platform.platform_id, page=query.page, size=query.size, **query.filters
    )
    return fit_page(found, query.size, budget)


@router.get(
    "/strategies/executions/{execution_id}",
    response_model=schemas.Execution,
    summary="Get an Execution",
    responses={**AUTH, **MISSING},
)
async def get_execution(
    execution_id: UUID, platform: PlatformDep, engine: EngineDep
) -> dict[str, Any]:
    found = await queries.get_execution(engine.pool, platform.platform_id, execution_id)
    if found is None:
        raise _not_found("execution", execution_id)
    return found


@router.get(
    "/strategies/traders", response_model=schemas.TraderPage, summary="List Traders", responses=AUTH
)
async def list_traders(
    platform: PlatformDep,
    engine: EngineDep,
    budget: ResponseBudgetDep,
    query: TraderQuery,
) -> dict[str, Any]:
    found = await queries.list_traders(
        engine.pool, platform.platform_id, page=query.page, size=query.size, **query.filters
    )
    return fit_page(found, query.size, budget)


@router.get(
    "/strategies/traders/{trader_id}",
    response_model=schemas.Trader,
    summary="Get a Trader",
    responses={**AUTH, **MISSING},
)
async def get_trader(trader_id: UUID, platform: PlatformDep, engine: EngineDep) -> dict[str, Any]:
    found = await queries.get_trader(engine.pool, platform.platform_id, trader_id)
    return found or await _written(engine, platform.platform_id, trader_id, Trader)


@router.get(
    "/strategies",
    response_model=schemas.StrategyPage,
    summary="List Strategies (extension)",
    responses=AUTH,
)
async def list_strategies(
    platform: PlatformDep,
    engine: EngineDep,
    budget: ResponseBudgetDep,
    query: StrategyQuery,
) -> dict[str, Any]:
    found = await queries.list_strategies(
        engine.pool, platform.platform_id, page=query.page, size=query.size, **query.filters
    )
    return fit_page(found, query.size, budget)


@router.get(
    "/strategies/{strategy_id}/drift",
    response_model=schemas.DriftSummary,
    summary="Drift of a Strategy's Traders (extension)",
    responses={
        **AUTH,
        **MISSING,
        409: {
            "model": Problem,
            "description": "`model_required`: the Strategy has no model; `prices_unknown`: "
            "no indicative price is known yet for a model asset (run an Operation first).",
        },
    },
)
async def get_drift(strategy_id: UUID, platform: PlatformDep, engine: EngineDep) -> dict[str, Any]:
    """Each active Trader's weights at the latest indicative prices against the model (less
    the policy's cash buffer), added up: read from the read models only."""
    return await drift_summary(engine.pool, platform.platform_id, strategy_id)


@router.get(
    "/strategies/{strategy_id}",
    response_model=schemas.Strategy,
    summary="Get a Strategy (extension)",
    responses={**AUTH, **MISSING},
)
async def get_strategy(
    strategy_id: UUID, platform: PlatformDep, engine: EngineDep
) -> dict[str, Any]:
    found = await queries.get_strategy(engine.pool, platform.platform_id, strategy_id)
    return found or await _written(engine, platform.platform_id, strategy_id, Strategy)
