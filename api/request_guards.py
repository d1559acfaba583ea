"""Refusals decided from the request line and headers alone, before any route runs.

- **Host** (`STRATEGIES_TRUSTED_HOSTS`): a request naming a host the deployment does not
  serve is a 400 `invalid_host`. The default, `*`, keeps local use easy; the app builds no
  absolute URL from the Host header (slash redirects are off, `create_app`), so a foreign
  Host cannot send a client elsewhere even then. Starlette's own TrustedHostMiddleware is
  not used: it answers in plain text and may redirect to `www.`.
- **A body on GET, HEAD or DELETE** is a 400 `body_not_allowed`. The signed text joins
  timestamp, method, path with query and body without separators, so a body let a captured
  signature of `GET /strategies/traders?participant_code=P1` be replayed as
  `GET /strategies/traders` with the body `?participant_code=P1{}`, a wider read. Such
  methods carry no body here, and their signature covers `{}` (spec §7.2). A declared
  `Content-Length` above 0 or any `Transfer-Encoding` announces a body (RFC 9112 §6.3), so
  the headers decide and nothing is read.

Plain ASGI: the answer is a problem document carrying the correlation id.
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

BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE"})


def install_request_guards(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(RequestGuardMiddleware, trusted_hosts=settings.http.trusted_hosts)


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


def announces_body(headers: Headers) -> bool:
    length = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or (length not in ("", "0"))


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp, trusted_hosts: Sequence[str] = ("*",)) -> None:
        self.app = app
        self.trusted_hosts = tuple(trusted_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.trusted_hosts != ("*",) and not host_allowed(
            headers.get("host", ""), self.trusted_hosts
        ):
            refusal = problem_response(
                400, "invalid_host", "This server does not serve the requested Host."
            )
            await refusal(scope, receive, send)
            return
        if scope["method"] in BODYLESS_METHODS and announces_body(headers):
            refusal = problem_response(
                400,
                "body_not_allowed",
                f"A {scope['method']} request carries no body; its signature covers '{{}}'.",
                instance=scope["path"],
                headers={"Connection": "close"},  # the unread body must not become a request
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)
