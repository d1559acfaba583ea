"""How `strategies serve` runs uvicorn: a slow or idle client holds a connection for a bounded
time, and the server holds a bounded number of them.

uvicorn (h11) arms its keep-alive timer only after a response, and any byte received cancels
it: a connection that never sends a request, or sends its headers a byte at a time, stayed
open for ever. uvicorn has no header timeout of its own, so `HeaderDeadlineProtocol` adds
one: from the moment a connection opens, and again after each response, the next request's
line and headers must be complete within `STRATEGIES_HTTP_HEADER_TIMEOUT_S`, or the
connection is closed. A request whose headers arrived is never cut by it, however long its
body or its answer takes.

`STRATEGIES_HTTP_MAX_CONNECTIONS` is uvicorn's `limit_concurrency`: at that many open
connections (or requests in flight) a new request gets a 503 and its connection is closed.
A request's line and headers together may hold h11's default of 16 KiB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from infra.logging import get_logger

if TYPE_CHECKING:
    import asyncio

    from infra.settings import HttpSection

log = get_logger("infra.cli.http_server")


class HeaderDeadlineProtocol(H11Protocol):
    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        # Armed first: a pipelined request already received starts its cycle in super().
        if not self.transport.is_closing():
            self._arm_header_deadline()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(
            self.header_timeout_s, self._header_deadline_passed, self.cycle
        )

    def _cancel_header_deadline(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._header_deadline = None

    def _header_deadline_passed(self, waiting_after: Any) -> None:
        """Closes the connection unless a request began since the deadline was armed (each
        request's headers, once complete, make a new cycle)."""
        self._header_deadline = None
        if self.cycle is waiting_after and not self.transport.is_closing():
            log.info("http.header_timeout", client=_client(self.client))
            self.transport.close()


def _client(address: tuple[str, int] | None) -> str:
    return f"{address[0]}:{address[1]}" if address else ""


def header_deadline_protocol(timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """uvicorn builds its protocol from the class alone, so the timeout rides on a subclass."""
    return type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": timeout_s}
    )


def server_config(app: Any, http: HttpSection, *, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=header_deadline_protocol(http.header_timeout_s),
        timeout_keep_alive=http.keepalive_timeout_s,
        limit_concurrency=http.max_connections,
        # X-Forwarded-For/-Proto are believed only from the proxies named.
        proxy_headers=bool(http.forwarded_allow_ips),
        forwarded_allow_ips=list(http.forwarded_allow_ips),
        log_config=None,  # keep our structlog handlers; uvicorn's loggers propagate to them
        access_log=False,  # the middleware logs one http.request line per request
    )
