"""Dependencies of the routes, as `Annotated` aliases (STYLE §6)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from infra.runtime import Engine


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.db_pool
    return pool


EngineDep = Annotated[Engine, Depends(get_engine)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
