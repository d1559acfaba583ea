"""Slow and idle clients against the server `strategies serve` runs (issue 15, item 10): uvicorn
built by `infra.cli.http_server.server_config`, in process on a free port, spoken to over raw
sockets. The app is a small ASGI app, since what is tested is the connection handling."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from infra.cli.http_server import server_config
from infra.settings import HttpSection

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 0.5
#: Far longer than the header timeout: a connection still open then was not closed by it.
PATIENCE_S = 20.0
SLOW_ANSWER_S = 1.5


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(SLOW_ANSWER_S)
    body = b"ok"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(**http: Any) -> AsyncIterator[int]:
    port = free_port()
    section = HttpSection(host="127.0.0.1", port=port, **http)
    server = uvicorn.Server(server_config(app, section, host="127.0.0.1", port=port))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await task


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent until it closed the connection (fails if it never does)."""
    received = b""
    async with asyncio.timeout(PATIENCE_S):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def test_a_connection_that_sends_nothing_is_closed() -> None:
    async with serving(header_timeout_s=HEADER_TIMEOUT_S) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(reader) == b""
        writer.close()


async def test_headers_sent_a_byte_at_a_time_are_cut_off() -> None:
    """Each byte would have cancelled uvicorn's keep-alive timer, had it been armed."""
    async with serving(header_timeout_s=HEADER_TIMEOUT_S) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        trickle = b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: " + b"x" * 1000

        async def send_slowly() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in trickle:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)

        sender = asyncio.create_task(send_slowly())
        assert await closed_by_server(reader) == b""
        sender.cancel()
        writer.close()


async def test_after_an_answer_the_next_request_has_the_same_deadline() -> None:
    async with serving(header_timeout_s=HEADER_TIMEOUT_S, keepalive_timeout_s=60) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHo")
        received = await closed_by_server(reader)
        assert received.startswith(b"HTTP/1.1 200 OK")
        assert received.count(b"HTTP/1.1") == 1
        writer.close()


async def test_requests_whose_headers_arrived_are_not_cut_however_long_they_take() -> None:
    async with serving(header_timeout_s=HEADER_TIMEOUT_S, keepalive_timeout_s=1) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):  # and again on the same connection
            writer.write(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
            async with asyncio.timeout(PATIENCE_S):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 OK"), head
                assert await reader.readexactly(2) == b"ok"
        writer.close()


async def test_past_the_connection_cap_a_request_gets_503() -> None:
    async with serving(header_timeout_s=PATIENCE_S, max_connections=2) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503")
        writer.close()
        for _, idle in held:
            idle.close()
