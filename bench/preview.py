"""How long a preview of a 10,000-participant rebalance takes, on the embedded default.

    STRATEGIES_DATA_DIR=/tmp/bench-preview uv run python bench/preview.py --traders 10000

N participants enroll into a Strategy with a model (one Operation per 10,000), then the
rebalance of all of them to other weights is previewed (`CommandService.preview`: the
venue's indicative prices, then `Trading.preview`: the scope from the roster, every Trader
and participant loaded, the credit check, the allotment, the totals) and its answer built
(the summary and a page of 50). Printed: each figure once; the Traders are in the
aggregate cache from their enrollment, as they are in a running engine that traded them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from domain.commands import PreviewOperation, Rebalance, build_command
from domain.eligibility import ParticipantStatus
from infra.bootstrap.engine import Engine
from infra.bus.memory import InProcessBus
from infra.devservices.database import database_url
from infra.logging import configure_logging
from infra.settings import Settings
from projections.previews import preview_resource

PLATFORM = "bench-preview"
MODEL = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
SKEWED = [
    {"underlying_currency": "BTC", "weight": "0.70"},
    {"underlying_currency": "ETH", "weight": "0.30"},
]
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
        people = [
            {"participant_code": c, "amount": "100.00", "auto_rebalance": True}
            for c in codes[start : start + PER_REQUEST]
        ]
        enrolled = await run(engine, "enroll", strategy, {"participants": people})
        pending.append(UUID(enrolled["id"]))
    for operation_id in pending:
        await until_terminal(engine, operation_id)
    enrolled_s = time.perf_counter() - started

    preview = PreviewOperation(Rebalance(strategy, {"allocations": SKEWED}))
    started = time.perf_counter()
    found = await engine.commands.preview(PLATFORM, preview)
    previewed_s = time.perf_counter() - started
    started = time.perf_counter()
    resource = preview_resource(found, preview)
    answered_s = time.perf_counter() - started
    summary = resource["summary"]
    return {
        "traders": traders,
        "enrolled_s": round(enrolled_s, 1),
        "preview_participants": summary["participant_count"],
        "preview_counts": summary["counts"],
        "preview_s": round(previewed_s, 2),
        "preview_us_per_participant": round(previewed_s * 1e6 / traders, 1),
        "answer_ms (summary + page of 50)": round(answered_s * 1e3, 1),
    }


async def run(engine: Engine, name: Any, strategy: UUID | None, body: dict[str, Any]) -> Any:
    command = build_command(name, strategy_id=strategy, trader_id=None, body=body)
    _kind, resource, _created = await engine.commands.run(PLATFORM, uuid4(), command)
    return resource


async def until_terminal(engine: Engine, operation_id: UUID) -> None:
    while True:
        operation = await engine.call(engine.trading.operation, operation_id)
        if operation.status.terminal:
            return
        await asyncio.sleep(0.1)


async def main(traders: int) -> None:
    settings = Settings()
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}), force=True)
    with database_url(settings) as url:
        async with Engine(settings, url, ["all"], bus=InProcessBus()) as engine:
            figures = await bench(engine, traders)
    for name, value in figures.items():
        sys.stdout.write(f"{name:>34}: {value}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traders", type=int, default=10_000)
    asyncio.run(main(parser.parse_args().traders))
