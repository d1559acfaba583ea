"""Is the broker serving clients yet? Answered by a real metadata request, never by sleeping.

The probe runs its own short-lived event loop in a worker thread, so it can be called from
plain sync code, from the CLI, and from sync fixtures while a pytest-asyncio loop exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from infra.settings_kafka import KafkaConnection

if TYPE_CHECKING:
    from collections.abc import Callable

_POLL_SECONDS = 0.2
_REQUEST_TIMEOUT_MS = 3000


class NotReadyError(Exception):
    """Raised when the broker did not answer in time or its process went away."""

    def __init__(self, reason: str, *, exited: bool) -> None:
        super().__init__(reason)
        self.exited = exited


def wait_until_ready(
    bootstrap: str,
    deadline: float,
    alive: Callable[[], bool] = lambda: True,
    connection: KafkaConnection | None = None,
) -> float:
    """Block until `bootstrap` answers a metadata request listing a broker.

    `deadline` is a time.monotonic() value; `alive` is polled between attempts so a broker
    that crashed fails at once instead of at the deadline; `connection`: the listener's
    security options (plain by default). Returns the seconds waited.
    """
    started = time.monotonic()
    probe = _probe_until(bootstrap, deadline, alive, connection or KafkaConnection())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-ready") as pool:
        pool.submit(asyncio.run, probe).result()
    return time.monotonic() - started


async def _probe_until(
    bootstrap: str, deadline: float, alive: Callable[[], bool], connection: KafkaConnection
) -> None:
    host, _, port = bootstrap.rpartition(":") if ":" in bootstrap else (bootstrap, ":", "9092")
    last_error = "no attempt made"
    while True:
        if not alive():
            raise NotReadyError("the broker process exited", exited=True)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotReadyError(f"not ready before the deadline ({last_error})", exited=False)
        try:
            # A bare TCP connect first: cheap, and it keeps aiokafka from logging an error
            # for every attempt while the JVM is still booting.
            await asyncio.wait_for(_connect(host, int(port)), timeout=min(remaining, 1.0))
            await asyncio.wait_for(_metadata(bootstrap, connection), timeout=remaining)
            return
        except Exception as exc:  # any failure here (refused, timeout, aiokafka) means "not yet"
            last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await asyncio.sleep(_POLL_SECONDS)


class _EmptyClusterError(Exception):
    """Raised when the metadata answer lists no broker (controller up, broker not yet)."""


async def _connect(host: str, port: int) -> None:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _metadata(bootstrap: str, connection: KafkaConnection) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=_REQUEST_TIMEOUT_MS,
        **connection.client_options(),
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        if not cluster.get("brokers"):
            raise _EmptyClusterError("metadata lists no broker yet")
    finally:
        await admin.close()
