"""Driving the real pipeline from tests: an Engine on real Kafka and PostgreSQL, a client that
speaks the command topics, and checks of what the domain's maths says should have happened."""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import structlog

from domain import ids
from domain.operation import Operation
from domain.services import Trading
from domain.statuses import OperationType
from domain.trader import Trader
from infra.bus import Delivery, Record
from infra.bus.kafka import KafkaBus
from infra.bus.messages import CommandResult
from infra.bus.topic_names import Topics
from infra.settings import Settings

PLATFORM = "platform-it"
BLUE_CHIP = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]


def pipeline_settings(database_url: str, bootstrap: str, prefix: str | None = None) -> Settings:
    return Settings(
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=prefix or f"it-{uuid4().hex[:12]}",
        chunk_size=50,
    )


def engine_settings(
    database_url: str, bootstrap: str, data_dir: Path, prefix: str, **extra: Any
) -> Settings:
    """Settings of a test's engines on Kafka: a data folder and topics of its own, a master
    key (webhooks), chunks of 2 Traders; `extra` adds or overrides fields."""
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"{prefix}-{uuid4().hex[:8]}",
        master_key=base64.b64encode(bytes(range(32))).decode(),
        **({"chunk_size": 2} | extra),
    )


async def request_enrollment(engine: Any, platform: str, codes: list[str]) -> UUID:
    """Fund `platform` with 10,000.00 USD, then enroll `codes` at 100.00 each in a new
    Strategy, straight through the engine's domain calls: the Operation's id."""
    trading = engine.trading
    await engine.call(trading.register_participants, platform, codes)
    await engine.call(trading.deposit_float, platform, "USD", Decimal("10000.00"), "IT")
    strategy, _ = await engine.call(
        trading.create_strategy, platform, uuid4(), {"quoted_currency": "USD"}
    )
    body = {
        "allocations": BLUE_CHIP,
        "participants": [{"participant_code": c, "amount": "100.00"} for c in codes],
    }
    operation, _ = await engine.call(
        trading.request_operation, platform, strategy.id, uuid4(), OperationType.ENROLLMENT, body
    )
    operation_id: UUID = operation.id
    return operation_id


async def wait_terminal(trading: Trading, operation_id: UUID, timeout: float = 90) -> Operation:
    deadline = time.monotonic() + timeout
    while True:
        operation = await asyncio.to_thread(trading.operation, operation_id)
        if operation.status.terminal:
            return operation
        if time.monotonic() > deadline:
            raise AssertionError(
                f"operation still {operation.status} after {timeout}s: {operation.chunks}"
            )
        await asyncio.sleep(0.1)


def holdings(trading: Trading, strategy_id: UUID, codes: list[str]) -> dict[str, Trader]:
    found = trading.get_many([ids.trader_id(strategy_id, c) for c in codes])
    return {t.participant_code: t for t in found.values() if isinstance(t, Trader)}


def locked_prices(operation: Operation) -> dict[str, Decimal]:
    return {asset: Decimal(q["price"]) for asset, q in operation.locked_prices.items()}


class CommandClient:
    """An upstream service: publishes commands, reads their results and dead letters."""

    def __init__(self, bootstrap: str, topics: Topics, platform: str = PLATFORM) -> None:
        self.topics = topics
        self.platform = platform
        self.bus = KafkaBus(bootstrap, client_id=f"client-{uuid4().hex[:6]}")
        self.results: dict[str, CommandResult] = {}
        self.dead_letters: list[dict[str, Any]] = []
        self.bus.subscribe(topics.command_results, f"client-{uuid4().hex}", self._result)
        self.bus.subscribe(topics.commands_dead_letter, f"client-{uuid4().hex}", self._dead)

    async def _result(self, delivery: Delivery) -> None:
        result = CommandResult.model_validate_json(delivery.value)
        self.results[result.request_id] = result

    async def _dead(self, delivery: Delivery) -> None:
        import json

        self.dead_letters.append(json.loads(delivery.value))

    async def __aenter__(self) -> CommandClient:
        await self.bus.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bus.stop()

    async def send_raw(self, value: bytes, key: str | None, headers: Mapping[str, str]) -> None:
        await self.bus.publish(Record(self.topics.commands, value, key=key, headers=dict(headers)))

    async def send(self, command: str, body: dict[str, Any], **target: Any) -> CommandResult:
        import json

        request_id = str(uuid4())
        payload = {"command": command, "body": body, **{k: str(v) for k, v in target.items()}}
        await self.send_raw(json.dumps(payload).encode(), request_id, {"platform": self.platform})
        return await self.result(request_id)

    async def result(self, request_id: str, timeout: float = 60) -> CommandResult:
        deadline = time.monotonic() + timeout
        while request_id not in self.results:
            if time.monotonic() > deadline:
                raise AssertionError(f"no result for command {request_id} after {timeout}s")
            await asyncio.sleep(0.05)
        return self.results[request_id]


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Warnings and errors only, while a fuzz test runs: an info line per request or
    command would bury its figures (a 5xx still logs its traceback)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    configured = structlog.is_configured()
    if not configured:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)
        if not configured:
            structlog.reset_defaults()


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A test webhook endpoint that keeps up with the sender's parallel connections.

    socketserver listens with a backlog of 5: when the test process is busy, the sender's
    eighth connection finds the queue full, its SYN is dropped and retried a second later,
    so delivery crawled at ~17 per second. Handlers should also speak HTTP/1.1 (keep-alive)."""

    request_queue_size = 128
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed sender's keep-alive
            super().handle_error(request, client_address)
