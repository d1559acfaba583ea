"""The Host header is checked before any route runs (`STRATEGIES_TRUSTED_HOSTS`).

A request naming a host the deployment does not serve is a 400 `invalid_host`. The default,
`*`, keeps local use easy; the app builds no absolute URL from the Host header (slash
redirects are off, `create_app`), so a foreign Host cannot send a client elsewhere even
then. Starlette's TrustedHostMiddleware is not used: it answers in plain text and may
redirect to `www.`. Plain ASGI: the answer is a problem document with the correlation id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import Headers

from api.errors import problem_response

if TYPE_CHECKING:
    from collections.abc import Sequence

    from fastapi import FastAPI
    from starlette.types import ASGIApp, Receive, Scope, Send

    from infra.settings import Settings


def install_request_guards(app: FastAPI, settings: Settings) -> None:
    if settings.http.trusted_hosts != ("*",):
        app.add_middleware(TrustedHostMiddleware, trusted_hosts=settings.http.trusted_hosts)


def host_allowed(host_header: str, patterns: Sequence[str]) -> bool:
    """`host[:port]` against `*`, exact names and `*.domain` (the domain itself excluded)."""
    host = host_header.strip().lower()
    host = host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
    for pattern in patterns:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class TrustedHostMiddleware:
    def __init__(self, app: ASGIApp, trusted_hosts: Sequence[str]) -> None:
        self.app = app
        self.trusted_hosts = tuple(trusted_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not host_allowed(
            Headers(scope=scope).get("host", ""), self.trusted_hosts
        ):
            refusal = problem_response(
                400, "invalid_host", "This server does not serve the requested Host."
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)
