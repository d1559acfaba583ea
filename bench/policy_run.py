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
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from cohort import cohort, measure, until_terminal

from infra.bootstrap.engine import Engine
from workers.scheduler import PolicyScheduler

PLATFORM = "bench-policy"
SKEWED = [
    {"underlying_currency": "BTC", "weight": "0.80"},
    {"underlying_currency": "ETH", "weight": "0.10"},
    {"underlying_currency": "SOL", "weight": "0.10"},
]
POLICY = {
    "calendar": {"frequency": "weekly", "weekday": "monday", "time": "09:30"},
    "drift_band": {"absolute": "0.05"},
}


async def bench(engine: Engine, traders: int) -> dict[str, Any]:
    group = await cohort(engine, PLATFORM, traders)

    def one_in_ten_skewed(batch: list[str]) -> list[tuple[list[str], Any]]:
        tenth = len(batch) // 10
        return [(batch[tenth:], None), (batch[:tenth], SKEWED)]

    enrolled_s = await group.enroll(one_in_ten_skewed)
    await group.run("set_policy", POLICY)
    today = datetime.now(UTC)
    monday = today.date() + timedelta(days=7 - today.weekday())
    at = datetime.combine(monday, datetime.min.time(), UTC) + timedelta(hours=10)

    async def listed() -> list[UUID]:
        return [group.strategy]

    trading = engine.trading
    scheduler = PolicyScheduler(
        trading, engine.venue, engine.commands, engine.call, listed, clock=lambda: at
    )
    started = time.perf_counter()
    (outcome,) = await scheduler.tick()
    decided_s = time.perf_counter() - started
    assert outcome.operation_id is not None, outcome
    settled_at = await until_terminal(engine, UUID(outcome.operation_id))
    operation = await engine.call(trading.operation, UUID(outcome.operation_id))
    found = (await engine.call(trading.strategy, PLATFORM, group.strategy)).last_policy_run or {}
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traders", type=int, default=10_000)
    count = parser.parse_args().traders
    measure(lambda engine: bench(engine, count))
