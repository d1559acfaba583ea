"""How long a policy's automatic run takes at scale, on the embedded default.

    STRATEGIES_DATA_DIR=/tmp/bench-policy uv run python bench/policy_run.py --traders 100000

N participants enroll into a Strategy with a model (one in ten bought off the model, so it
drifts), the Strategy gets a weekly policy with a 5-point band, and the scheduler runs the
next Monday's period with its clock set there. Printed: the run's decision (one RunPolicy
command: every auto-rebalance Trader loaded from the store, valued, selected, the rebalance
and the period's record written) and the rebalance of the drifted to its end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
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
from workers.scheduler import PolicyScheduler

PLATFORM = "bench-policy"
MODEL = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
SKEWED = [
    {"underlying_currency": "BTC", "weight": "0.80"},
    {"underlying_currency": "ETH", "weight": "0.10"},
    {"underlying_currency": "SOL", "weight": "0.10"},
]
POLICY = {
    "calendar": {"frequency": "weekly", "weekday": "monday", "time": "09:30"},
    "drift_band": {"absolute": "0.05"},
}
PER_REQUEST = 10_000


async def bench(engine: Engine, traders: int) -> dict[str, Any]:
    trading = engine.trading
    codes = [f"P{i:07d}" for i in range(traders)]
    for start in range(0, traders, PER_REQUEST):
        batch = codes[start : start + PER_REQUEST]
        await engine.call(trading.register_participants, PLATFORM, batch, ParticipantStatus.ACTIVE)
    await engine.call(
        trading.deposit_float, PLATFORM, "USD", Decimal(traders) * Decimal(200), uuid4().hex
    )
    created = await run(
        engine, "create_strategy", None, {"quoted_currency": "USD", "allocations": MODEL}
    )
    strategy = UUID(created["id"])
    started = time.perf_counter()
    pending = []
    for start in range(0, traders, PER_REQUEST):
        batch = codes[start : start + PER_REQUEST]
        tenth = len(batch) // 10
        for skewed, part in ((False, batch[tenth:]), (True, batch[:tenth])):
            if not part:
                continue
            body: dict[str, Any] = {
                "participants": [
                    {"participant_code": c, "amount": "100.00", "auto_rebalance": True}
                    for c in part
                ]
            }
            if skewed:
                body["allocations"] = SKEWED
            pending.append(UUID((await run(engine, "enroll", strategy, body))["id"]))
    for operation_id in pending:
        await until_terminal(engine, operation_id)
    enrolled_s = time.perf_counter() - started
    await run(engine, "set_policy", strategy, POLICY)
    today = datetime.now(UTC)
    monday = today.date() + timedelta(days=7 - today.weekday())
    at = datetime.combine(monday, datetime.min.time(), UTC) + timedelta(hours=10)

    async def listed() -> list[UUID]:
        return [strategy]

    scheduler = PolicyScheduler(
        trading, engine.venue, engine.commands, engine.call, listed, clock=lambda: at
    )
    started = time.perf_counter()
    (outcome,) = await scheduler.tick()
    decided_s = time.perf_counter() - started
    assert outcome.operation_id is not None, outcome
    settled_at = await until_terminal(engine, UUID(outcome.operation_id))
    operation = await engine.call(trading.operation, UUID(outcome.operation_id))
    found = (await engine.call(trading.strategy, PLATFORM, strategy)).last_policy_run or {}
    return {
        "traders": traders,
        "enrolled_s": round(enrolled_s, 1),
        "evaluated": found.get("evaluated"),
        "outside": found.get("outside"),
        "run_decision_s": round(decided_s, 2),
        "run_decision_us_per_trader": round(decided_s * 1e6 / traders, 1),
        "rebalance_s": round(settled_at - started - decided_s, 1),
        "rebalance_status": operation.status.value,
        "rebalanced": operation.counts["settled"],
    }


async def run(engine: Engine, name: Any, strategy: UUID | None, body: dict[str, Any]) -> Any:
    command = build_command(name, strategy_id=strategy, trader_id=None, body=body)
    _kind, resource, _created = await engine.commands.run(PLATFORM, uuid4(), command)
    return resource


async def until_terminal(engine: Engine, operation_id: UUID) -> float:
    while True:
        operation = await engine.call(engine.trading.operation, operation_id)
        if operation.status.terminal:
            return time.perf_counter()
        await asyncio.sleep(0.1)


async def main(traders: int) -> None:
    settings = Settings()
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}), force=True)
    with database_url(settings) as url:
        async with Engine(settings, url, ["all"], bus=InProcessBus()) as engine:
            figures = await bench(engine, traders)
    for name, value in figures.items():
        sys.stdout.write(f"{name:>28}: {value}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traders", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().traders))
