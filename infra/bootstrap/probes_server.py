"""A `strategies worker`'s own small HTTP endpoint (issue 20), on `STRATEGIES_METRICS_PORT`:
`/metrics` (Prometheus text), `/health/live` and `/health/ready`.

A worker does not load the web stack (FastAPI, uvicorn): this is asyncio's server and a few
lines of HTTP/1.1, GET only, one answer per connection. Ready means the database answers
within 2 s and, on Kafka, every subscription of the process holds a partition (a worker
still joining its groups, or one of more processes than partitions, is live but not ready);
the reason is in the 503's body."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import structlog

from infra.metrics import CONTENT_TYPE, METRICS

log = structlog.get_logger("infra.bootstrap.probes_server")

#: Why the process is not ready, "" when it is.
Readiness = Callable[[], Awaitable[str]]
_HEAD_LIMIT = 8192
_TIMEOUT_S = 5.0


async def serve_probes(host: str, port: int, readiness: Readiness) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _TIMEOUT_S)
            status, content_type, body = await _answer(head[:_HEAD_LIMIT], readiness)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        except Exception as error:  # never let a probe take the worker down
            log.warning("probes.failed", error=repr(error))
            status, content_type, body = 500, "text/plain", b"error\n"
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=_HEAD_LIMIT)
    log.info("probes.listening", host=host, port=port)
    return server


async def _answer(head: bytes, readiness: Readiness) -> tuple[int, str, bytes]:
    method, _, rest = head.partition(b" ")
    path = rest.partition(b" ")[0].partition(b"?")[0]
    if method != b"GET":
        return 405, "text/plain", b"GET only\n"
    if path == b"/metrics":
        return 200, CONTENT_TYPE, METRICS.render()
    if path == b"/health/live":
        return 200, "application/json", b'{"status":"ok","reason":""}'
    if path == b"/health/ready":
        reason = await readiness()
        answer = {"status": "not_ready" if reason else "ok", "reason": reason}
        return (503 if reason else 200), "application/json", json.dumps(answer).encode()
    return 404, "text/plain", b"not found\n"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
