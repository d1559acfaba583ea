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
import time
from typing import Any

from cohort import cohort, measure

from domain.commands import PreviewOperation, Rebalance
from infra.bootstrap.engine import Engine
from projections.previews import preview_resource

PLATFORM = "bench-preview"
SKEWED = [
    {"underlying_currency": "BTC", "weight": "0.70"},
    {"underlying_currency": "ETH", "weight": "0.30"},
]


async def bench(engine: Engine, traders: int) -> dict[str, Any]:
    group = await cohort(engine, PLATFORM, traders)
    enrolled_s = await group.enroll(lambda batch: [(batch, None)])
    strategy = group.strategy
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traders", type=int, default=10_000)
    count = parser.parse_args().traders
    measure(lambda engine: bench(engine, count))
