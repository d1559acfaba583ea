"""Dependencies of the routes, as `Annotated` aliases (STYLE §6)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from api.errors import ProblemError
from infra.runtime import Engine


def get_engine(request: Request) -> Engine:
    engine: Engine | None = request.app.state.engine
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


EngineDep = Annotated[Engine, Depends(get_engine)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
