"""The FastAPI application: built by `create_app`, served by `strategies serve`.

The app is built from explicit arguments (settings, the resolved database URL) rather than
globals, so tests and the CLI assemble it the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import asyncpg
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders

from api.abuse_limits import install_abuse_limits
from api.errors import document_problems, install_error_handlers
from api.limits import BodySizeLimitMiddleware
from api.pages import STATIC_DIR, STATIC_PATH
from api.request_guards import install_request_guards
from api.routes import (
    admin,
    dashboard,
    events,
    health,
    observability,
    operations,
    pages,
    reads,
    server_time,
    traders,
    webhooks,
)
from infra.logging import acceptable_correlation_id, bind_correlation_id, get_logger
from infra.metrics import METRICS
from infra.postgres.secrets_box import secret_box_for
from infra.tracing import described, serving_http

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from api.deps import Pipeline
    from infra.settings import Settings

log = get_logger("api.http")

DESCRIPTION = (
    "Managed multi-asset baskets for platform users: define a Strategy, enroll participants, "
    "and run enroll, top-up, partial-sell, rebalance and liquidate Operations on them."
)


def _version() -> str:
    try:
        return version("portfolio-strategies")
    except PackageNotFoundError:
        return "0+unknown"


def build_app(
    settings: Settings,
    database_url: str,
    *,
    start_pipeline: Callable[[], Awaitable[Pipeline]] | None = None,
) -> FastAPI:
    """`start_pipeline` starts the write side the routes use (the composition root passes
    it: `infra.bootstrap.http.create_app`); without it the routes that need it answer 503."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # min_size=0: no connection at start-up, so an unreachable database shows up as a
        # degraded /health instead of a process that refuses to start.
        pool = await asyncpg.create_pool(database_url, min_size=0, max_size=10, timeout=5)
        app.state.db_pool = pool
        app.state.engine = None
        if start_pipeline is not None:
            app.state.engine = await _start_pipeline(start_pipeline)
        try:
            yield
        finally:
            if app.state.engine is not None:
                await app.state.engine.stop()
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    app = FastAPI(
        title="Portfolio Strategies",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # No 307 from /strategies/ to /strategies: it named the client's Host (evil.example
        # too) and a following client re-sent its signing headers there. 404/405 instead.
        redirect_slashes=False,
        # Served from packaged assets instead (`api.routes.pages`): the defaults load a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.embedded_db = settings.postgres.embedded
    app.state.secret_box = secret_box_for(settings)  # fails early when the key is missing
    app.include_router(health.router)
    app.include_router(observability.router)
    app.include_router(observability.admin_router)
    app.include_router(server_time.router)
    app.include_router(operations.router)
    app.include_router(events.router)  # before reads: /strategies/{strategy_id} would catch it
    app.include_router(reads.router)
    app.include_router(traders.router)
    app.include_router(admin.router)
    app.include_router(webhooks.router)
    app.include_router(pages.router)
    app.include_router(dashboard.router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")
    install_error_handlers(app)
    _document_problems(app)
    install_abuse_limits(app, settings.abuse_limits)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    install_request_guards(app, settings)
    app.add_middleware(CorrelationIdMiddleware)  # added last: outermost
    return app


def _document_problems(app: FastAPI) -> None:
    """Serve the OpenAPI document with the problem responses' real media type."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_problems(generate())  # FastAPI caches what it generated
        return generate()

    app.openapi = openapi  # type: ignore[method-assign]


async def _start_pipeline(start: Callable[[], Awaitable[Pipeline]]) -> Pipeline | None:
    """The API needs the write side (commands) and the read models (queries). If they cannot
    start (database down), the API still starts: /health says why and every other route
    answers 503 with a retry hint until a restart."""
    try:
        return await start()
    except Exception:
        log.exception("api.engine_unavailable")
        return None


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class CorrelationIdMiddleware:
    """One correlation id per request, on every log line and in `X-Correlation-ID`, and
    one server span (`infra.tracing`), current while the route runs.

    Plain ASGI rather than BaseHTTPMiddleware: no body buffering, and the contextvars bound
    here are the ones the endpoint runs with.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        correlation_id = acceptable_correlation_id(headers.get("x-request-id"))
        status_code = 500  # what the client gets if the app raises before answering
        started = time.perf_counter()
        method = scope["method"] if scope["method"] in _METHODS else "other"

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                MutableHeaders(scope=message).append("X-Correlation-ID", bound_id)
            await send(message)

        with bind_correlation_id(correlation_id) as bound_id, serving_http(headers, method) as span:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                log.info(
                    "http.request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status_code,
                    duration_ms=round(elapsed * 1000, 2),
                )
                # By the route's template (the router put it in the scope), never the raw
                # path: ids in paths would make a series per resource.
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                described(span, method, route, status_code)
                METRICS.http_requests.labels(route, method, str(status_code)).inc()
                METRICS.http_duration.labels(route, method).observe(elapsed)
