"""The HTTP process: the API's app with the pipeline it serves, built here so that `api`
imports nothing above it (it knows the pipeline only as `api.deps.Pipeline`). Its own
module so that a worker process never loads the web stack."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from api.main import build_app
from infra.bootstrap.engine import Engine

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api.deps import Pipeline
    from infra.settings import Settings


def create_app(
    settings: Settings, database_url: str, *, run_engine: bool = True, roles: Sequence[str] = ()
) -> FastAPI:
    """`roles`: the pipeline roles this process also runs. In embedded mode (no Kafka) every
    role must run here, since the bus is in-process; with Kafka the API usually runs none."""

    async def start() -> Pipeline:
        engine = await Engine(settings, database_url, roles).start()
        engine.watch_pool("api", app.state.db_pool)  # the lifespan made it before the engine
        return engine

    app = build_app(settings, database_url, start_pipeline=start if run_engine else None)
    return app
