"""A cap on request body size (spec §11.3, §11.19): 413 `request_too_large`.

The default, 4 MiB, holds an enroll of 10,000 participants several times over (one entry
is about 60 bytes of JSON). A declared `Content-Length` above the cap is refused before the
body is read. A chunked body is counted as it streams in: once it passes the cap, reading
stops and whatever the application was about to answer (FastAPI turns a failed read into a
400) is replaced by the 413, so the client always sees the real reason.

Plain ASGI, no body buffering of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import Headers

from api.errors import ProblemError, problem_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class RequestTooLargeError(ProblemError):
    """Raised into the application when a streamed request body passes the cap.

    A `ProblemError`, so that wherever it surfaces (a dependency reading the body, or an
    outer middleware) it is a 413 and never an unexpected error logged as a 500.
    """

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(
            413, "request_too_large", f"The request body is larger than {max_body_bytes} bytes."
        )


#: A refused body is read and discarded up to this much, so an ordinary client that is still
#: sending gets the 413 instead of a reset connection; beyond it the connection is just closed.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes < 0:
            raise ValueError("max_body_bytes must not be negative")
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise RequestTooLargeError(self.max_body_bytes)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the 413 replaces whatever the application answers
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except RequestTooLargeError:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._drain(receive)
        refusal = RequestTooLargeError(self.max_body_bytes)
        response = problem_response(
            refusal.status,
            refusal.code,
            refusal.detail,
            instance=scope["path"],
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    @staticmethod
    async def _drain(receive: Receive) -> None:
        drained = 0
        while drained <= DRAIN_LIMIT_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
