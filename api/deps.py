"""Dependencies of the routes, as `Annotated` aliases (STYLE §6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Protocol, TypeVar
from uuid import UUID

import asyncpg
from fastapi import Depends, Request

from api.dashboard_data import Snapshot
from api.errors import ProblemError
from domain import commands
from domain.preview import OperationPreview
from infra.eventstore.store import PostgresTrading

T = TypeVar("T")


class Commands(Protocol):
    """Runs one mutation for one platform (the same service the command topic uses)."""

    async def run(
        self, platform: str, request_id: UUID, command: commands.Command
    ) -> tuple[str, dict[str, Any], bool]:
        """(resource type, resource, created); a refusal raises the domain's error."""
        ...

    async def preview(self, platform: str, preview: commands.PreviewOperation) -> OperationPreview:
        """What the Operation request would do now, at the venue's indicative prices;
        nothing is written. A refusal raises the domain's error, as `run` does."""
        ...


class OperatorView(Protocol):
    """What the operator dashboard shows, gathered by the composition root from the read
    models, the write side and the process's gauges (`infra.bootstrap.operator_view`)."""

    async def snapshot(self) -> Snapshot:
        """The dashboard's figures now (a second old at most: viewers share one)."""
        ...


class Pipeline(Protocol):
    """What the routes use of the running write side. The composition root's Engine
    (`infra.bootstrap.engine`) satisfies it; the API never builds or imports one."""

    @property
    def trading(self) -> PostgresTrading: ...

    @property
    def commands(self) -> Commands: ...

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def operator_view(self) -> OperatorView: ...

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a synchronous domain call off the event loop, retried on write conflicts."""
        ...

    async def readiness(self) -> str:
        """Why the process is not ready to take work, "" when it is."""
        ...

    async def stop(self) -> None: ...


def get_engine(request: Request) -> Pipeline:
    engine: Pipeline | None = request.app.state.engine
    if engine is None:
        raise ProblemError(
            503,
            "unavailable",
            "the engine could not start (see /health); try again shortly",
            headers={"Retry-After": "5"},
        )
    return engine


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.db_pool
    return pool


EngineDep = Annotated[Pipeline, Depends(get_engine)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
