"""Two Operations racing on the same Traders, and a worker process killed mid-Operation."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from domain import ids
from domain.chunk import OperationChunk, chunk_id
from domain.ledger import check_balanced, settlement_postings
from domain.statuses import OperationStatus, OperationType
from infra.bootstrap.engine import Engine
from infra.eventstore.store import PostgresTrading
from infra.venue import build_venue
from infra.venue.config import VenueConfig
from tests.integration.pipeline.harness import (
    BLUE_CHIP,
    PLATFORM,
    pipeline_settings,
    wait_terminal,
)

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


def funded(codes: list[str], amount: str = "100.00") -> list[dict[str, object]]:
    return [{"participant_code": c, "amount": amount, "auto_rebalance": True} for c in codes]


async def test_overlapping_operations_never_share_a_trader(
    fresh_database_url: str, kafka_bootstrap: str
) -> None:
    settings = pipeline_settings(fresh_database_url, kafka_bootstrap)
    slow_quotes = build_venue(VenueConfig(latency_ms=1500))  # keeps the first one in pricing
    async with Engine(settings, fresh_database_url, ["all"], venue=slow_quotes) as engine:
        trading = engine.trading
        codes = [f"R{i:02d}" for i in range(20)]
        await engine.call(trading.register_participants, PLATFORM, codes)
        await engine.call(trading.deposit_float, PLATFORM, "USD", Decimal("100000.00"), "IT")
        strategy, _ = await engine.call(
            trading.create_strategy, PLATFORM, uuid4(), {"quoted_currency": "USD"}
        )
        enrolled, _ = await engine.call(
            trading.request_operation,
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.ENROLLMENT,
            {"allocations": BLUE_CHIP, "participants": funded(codes)},
        )
        await wait_terminal(trading, enrolled.id)

        first, _ = await engine.call(
            trading.request_operation,
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.TOP_UP,
            {"allocations": BLUE_CHIP, "participants": funded(codes[:12])},
        )
        await _until_checked(trading, first.id)
        second, _ = await engine.call(
            trading.request_operation,
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.REBALANCE,
            {"allocations": BLUE_CHIP, "participants": codes[8:]},
        )
        first_done, second_done = await asyncio.gather(
            wait_terminal(trading, first.id), wait_terminal(trading, second.id)
        )
        assert first_done.status is OperationStatus.SETTLED
        decisions = _decisions(trading, second_done.id, second_done.chunk_count)
        assert {c: d["reasons"] for c, d in decisions.items() if d["outcome"] == "rejected"} == {
            c: "concurrent_hold" for c in codes[8:12]
        }
        for code in codes:
            settled_in = [
                op
                for op in (first.id, second.id)
                if _decisions(trading, op, 1).get(code, {}).get("outcome") == "settled"
            ]
            assert len(settled_in) <= 1, code


async def _until_checked(trading: PostgresTrading, operation_id: UUID) -> None:
    for _ in range(300):
        operation = await asyncio.to_thread(trading.operation, operation_id)
        if operation.status is not OperationStatus.VALIDATING:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the first operation was never checked")


def _decisions(
    trading: PostgresTrading, operation_id: UUID, chunks: int
) -> dict[str, dict[str, str]]:
    found = trading.get_many([chunk_id(operation_id, i) for i in range(chunks)])
    return {
        code: decision
        for chunk in found.values()
        if isinstance(chunk, OperationChunk)
        for code, decision in chunk.decisions.items()
    }


def start_worker(
    database_url: str, bootstrap: str, prefix: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        # `worker all` sends webhooks, which needs the key (the same in every process)
        "STRATEGIES_MASTER_KEY": MASTER_KEY,
        "STRATEGIES_TOPIC_PREFIX": prefix,
        "STRATEGIES_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "worker", "all"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize(
    ("kill_when", "how"),
    [
        ("checking", signal.SIGKILL),
        ("settling", signal.SIGKILL),
        ("settling", signal.SIGTERM),  # a graceful stop: drains, exits 0, leaves nothing half
    ],
)
async def test_a_worker_killed_mid_operation_finishes_it_exactly_once_after_restart(
    fresh_database_url: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    kill_when: str,
    how: signal.Signals,
) -> None:
    prefix = f"kill-{uuid4().hex[:10]}"
    trading = await asyncio.to_thread(PostgresTrading, fresh_database_url, chunk_size=40)
    codes = [f"K{i:04d}" for i in range(1200)]
    await asyncio.to_thread(trading.ensure_default_catalogue)
    await asyncio.to_thread(trading.register_participants, PLATFORM, codes)
    await asyncio.to_thread(trading.deposit_float, PLATFORM, "USD", Decimal("1000000.00"), "IT")
    strategy, _ = await asyncio.to_thread(
        trading.create_strategy, PLATFORM, uuid4(), {"quoted_currency": "USD"}
    )
    log = tmp_path / "worker.log"
    worker = start_worker(fresh_database_url, kafka_bootstrap, prefix, log)
    try:
        operation, _ = await asyncio.to_thread(
            trading.request_operation,
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.ENROLLMENT,
            {"allocations": BLUE_CHIP, "participants": funded(codes)},
        )
        await _until_stage(trading, operation.id, kill_when, log)
        began = time.monotonic()
        worker.send_signal(how)
        code = worker.wait(timeout=60)
        if how is signal.SIGTERM:
            assert code == 0, log.read_text()[-3000:]
            assert time.monotonic() - began < 45  # drained in-flight work, did not hang
            assert '"engine.stopped"' in log.read_text()
        worker = start_worker(fresh_database_url, kafka_bootstrap, prefix, log)
        # started before it is stopped below: a signal during its imports is not a drain
        await _until_started(worker, log, times=2)
        done = await wait_terminal(trading, operation.id, timeout=180)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert done.status is OperationStatus.SETTLED
    assert done.counts["settled"] == len(codes)
    settled = Counter()
    postings = []
    for code in codes:
        trader_id = ids.trader_id(strategy.id, code)
        for event in trading.events.get(trader_id):
            if type(event).__name__ == "Settled":
                settled[code] += 1
                postings += settlement_postings(
                    trader_id,
                    "USD",
                    event.instructions,
                    event.funded,
                    event.paid_out,  # type: ignore[attr-defined]
                )
    assert set(settled.values()) == {1}
    account = trading._float(PLATFORM, "USD")
    assert account.balance == Decimal("1000000.00") - Decimal("100.00") * len(codes)
    assert check_balanced(str(operation.id), postings) == []
    assert worker.returncode == 0, log.read_text()[-2000:]
    trading.close()


async def _until_started(worker: subprocess.Popen[bytes], log: Path, times: int) -> None:
    """Until the log (shared by the worker's runs) shows its `times`-th engine start."""
    deadline = time.monotonic() + 60
    while log.read_text().count('"engine.started"') < times:
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        await asyncio.sleep(0.2)


async def _until_stage(trading: PostgresTrading, operation_id: UUID, stage: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        operation = await asyncio.to_thread(trading.operation, operation_id)
        states = Counter(operation.chunks.values())
        if stage == "checking" and 0 < states["checked"] < operation.chunk_count:
            return
        if stage == "settling" and 0 < states["settled"] < operation.chunk_count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never saw the operation {stage}: {log.read_text()[-3000:]}")
