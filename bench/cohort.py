"""What the small benchmark scripts share: an embedded engine, a funded platform with N
registered participants and a Strategy with a model, commands through the command service,
and waiting for an Operation's end. Imported by `bench/policy_run.py` and `bench/preview.py`
(run as scripts, so this folder is on their path)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from domain.commands import build_command
from domain.eligibility import ParticipantStatus
from infra.bootstrap.engine import Engine
from infra.bus.memory import InProcessBus
from infra.devservices.database import database_url
from infra.logging import configure_logging
from infra.settings import Settings

MODEL = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
#: Participants per Operation request (the default request limit).
PER_REQUEST = 10_000


@dataclass(frozen=True)
class Cohort:
    engine: Engine
    platform: str
    strategy: UUID
    codes: list[str]

    async def run(self, name: Any, body: dict[str, Any], strategy: bool = True) -> Any:
        """A command through the command service, as HTTP and Kafka send it: its resource."""
        command = build_command(
            name, strategy_id=self.strategy if strategy else None, trader_id=None, body=body
        )
        _kind, resource, _created = await self.engine.commands.run(self.platform, uuid4(), command)
        return resource

    async def enroll(
        self, allocations_of: Callable[[list[str]], list[tuple[list[str], Any]]]
    ) -> float:
        """Enroll every participant, PER_REQUEST per request; `allocations_of(batch)` splits
        a batch into (codes, allocations or None for the model). Seconds until all settled."""
        started = time.perf_counter()
        pending = []
        for start in range(0, len(self.codes), PER_REQUEST):
            for part, allocations in allocations_of(self.codes[start : start + PER_REQUEST]):
                if not part:
                    continue
                body: dict[str, Any] = {
                    "participants": [
                        {"participant_code": c, "amount": "100.00", "auto_rebalance": True}
                        for c in part
                    ]
                }
                if allocations is not None:
                    body["allocations"] = allocations
                pending.append(UUID((await self.run("enroll", body))["id"]))
        for operation_id in pending:
            await until_terminal(self.engine, operation_id)
        return time.perf_counter() - started


async def cohort(engine: Engine, platform: str, traders: int) -> Cohort:
    """N participants registered, the float funded, a Strategy with `MODEL` created."""
    codes = [f"P{i:07d}" for i in range(traders)]
    trading = engine.trading
    for start in range(0, traders, PER_REQUEST):
        batch = codes[start : start + PER_REQUEST]
        await engine.call(trading.register_participants, platform, batch, ParticipantStatus.ACTIVE)
    await engine.call(
        trading.deposit_float, platform, "USD", Decimal(traders) * Decimal(200), uuid4().hex
    )
    empty = Cohort(engine, platform, UUID(int=0), codes)
    created = await empty.run(
        "create_strategy", {"quoted_currency": "USD", "allocations": MODEL}, strategy=False
    )
    return Cohort(engine, platform, UUID(created["id"]), codes)


async def until_terminal(engine: Engine, operation_id: UUID) -> float:
    while True:
        operation = await engine.call(engine.trading.operation, operation_id)
        if operation.status.terminal:
            return time.perf_counter()
        await asyncio.sleep(0.1)


def measure(bench: Callable[[Engine], Awaitable[dict[str, Any]]]) -> None:
    """Run `bench` on an embedded engine (`STRATEGIES_DATA_DIR`) and print its figures."""

    async def main() -> None:
        settings = Settings()
        configure_logging(settings.model_copy(update={"log_level": "WARNING"}), force=True)
        with database_url(settings) as url:
            async with Engine(settings, url, ["all"], bus=InProcessBus()) as engine:
                figures = await bench(engine)
        for name, value in figures.items():
            sys.stdout.write(f"{name:>34}: {value}\n")

    asyncio.run(main())
