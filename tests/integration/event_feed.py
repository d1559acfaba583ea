"""`GET /strategies/events` alone, on a real store: the route without the signature check
(the `x-test-platform` header names the caller), for the tests of the feed's paging."""

from __future__ import annotations

import asyncio
import secrets
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request

from api.auth import AuthenticatedPlatform, authenticated_platform
from api.errors import install_error_handlers
from api.routes import events
from infra.postgres.secrets_box import SecretBox
from infra.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from infra.eventstore.store import PostgresTrading


class Reader:
    """What the route needs of the Engine: the store, and a way to call it off the loop."""

    def __init__(self, trading: PostgresTrading) -> None:
        self.trading = trading

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


@asynccontextmanager
async def feed_client(trading: PostgresTrading) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.engine = Reader(trading)
    app.state.secret_box = SecretBox(secrets.token_bytes(32))
    app.state.settings = Settings()  # the response byte budget

    def platform(request: Request) -> AuthenticatedPlatform:
        return AuthenticatedPlatform(request.headers["x-test-platform"], "key")

    app.dependency_overrides[authenticated_platform] = platform
    app.include_router(events.router)
    install_error_handlers(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client
