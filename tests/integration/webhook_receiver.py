"""A real webhook receiver on loopback, in a thread: what a platform's endpoint sees."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from infra.devservices.ports import LOOPBACK, free_port
from tests.integration.pipeline.harness import LoopbackHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def notification_id(self) -> str:
        return self.headers["x-zh-hook-notification-id"]

    @property
    def payload_type(self) -> str:
        return self.headers["x-zh-hook-payload-type"]

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


@dataclass
class Receiver:
    """A real HTTP receiver in a thread: `fail_first` 500s per notification id, or `hang`."""

    fail_first: int = 0
    hang: bool = False
    delay: float = 0.0  # answer 200 after this long
    arrivals: int = 0  # requests received, answered or not yet
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def ok(self) -> list[Received]:
        """The accepted notifications in the order of their objects' `updated_at`, as the
        spec (§8.4) tells receivers to order them: concurrent sends arrive in any order."""
        accepted = [r for r in self.requests if r.status == 200]
        return sorted(accepted, key=lambda r: datetime.fromisoformat(r.payload["updated_at"]))

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        self.arrivals += 1
        time.sleep(self.delay)
        if self.hang:
            time.sleep(1.0)  # well past the sender's timeout: it has hung up by now
            return 504
        nid = headers.get("x-zh-hook-notification-id", "")
        earlier = sum(1 for r in self.requests if r.notification_id == nid)
        return 500 if earlier < self.fail_first else 200


@contextlib.contextmanager
def serving(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            code = receiver.answer(headers, body)
            receiver.requests.append(Received(headers, body, code, time.monotonic()))
            with contextlib.suppress(OSError):  # the sender may have given up already
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = LoopbackHTTPServer((LOOPBACK, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://{LOOPBACK}:{port}/hooks"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
