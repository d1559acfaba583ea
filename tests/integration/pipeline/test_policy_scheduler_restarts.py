"""The policy scheduler as deployed: real processes on a real PostgreSQL, embedded
(`strategies serve`, the HTTP server with the whole pipeline) and on Kafka (`strategies worker
all` twice: a leader and a standby). A daily policy comes due at the next minute; the process
that ran the period is SIGKILLed right after and restarted, and the schedulers keep ticking
every second: exactly one automatic Operation for the period, only the drifted Traders in it,
settled, and the audit's verify passes.

Both worlds wait for the same minute, side by side (the calendar's resolution is a minute).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from domain import ids
from domain.operation import Operation
from domain.statuses import OperationStatus, OperationType
from infra.devservices.ports import free_port
from infra.eventstore.store import PostgresTrading
from tests.cli import run_cli
from tests.fixtures.postgres import scratch_database
from tests.integration.pipeline.harness import BLUE_CHIP, PLATFORM, wait_terminal

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]

IN_LINE = ["L1", "L2"]
DRIFTED = ["D1", "D2", "D3"]
SKEWED = [
    {"underlying_currency": "BTC", "weight": "0.80"},
    {"underlying_currency": "ETH", "weight": "0.10"},
    {"underlying_currency": "SOL", "weight": "0.10"},
]
DEADLINE_S = 180.0


class Fleet:
    """The processes of one world; `restart` SIGKILLs one and starts it again."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.commands: dict[str, list[str]] = {}
        self.extra: dict[str, dict[str, str]] = {}

    def start(self, name: str, *args: str, **env: str) -> None:
        self.commands[name] = list(args)
        self.extra[name] = {**self.extra.get(name, {}), **env}
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", *args],
            cwd=ROOT,
            env={**self.env, **self.extra[name]},
            stdout=(self.logs / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def restart(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        self.start(name, *self.commands[name])

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()

    def log_text(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in self.logs.glob("*.log")
        )


def scheduled_minute() -> datetime:
    """The next whole UTC minute at least 10 s away (time to set the policy before it)."""
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return minute if (minute - now).total_seconds() >= 10 else minute + timedelta(minutes=1)


@contextlib.contextmanager
def fleet_for(
    database_url: str, tmp_path: Path, kafka: str | None
) -> Iterator[tuple[Fleet, list[str]]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("STRATEGIES_") and k != "STRATEGIES_ENV_FILE")
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env |= {
        "DATABASE_URL": database_url,
        "STRATEGIES_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRATEGIES_DATA_DIR": str(tmp_path / "data"),
        "STRATEGIES_LOG_FORMAT": "json",
        "STRATEGIES_SCHEDULER_INTERVAL_S": "1",
        "STRATEGIES_CHUNK_SIZE": "2",
    }
    if kafka is not None:
        env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka, "STRATEGIES_TOPIC_PREFIX": f"p-{uuid4().hex[:8]}"}
    fleet = Fleet(env, tmp_path)
    try:
        if kafka is None:
            port = str(free_port())
            fleet.start("serve", "serve", "--port", port)
            yield fleet, [f"http://127.0.0.1:{port}"]
        else:
            # Each worker answers its probes and metrics on a port of its own (issue 20).
            ports = [free_port(), free_port()]
            fleet.start("leader", "worker", "all", STRATEGIES_METRICS_PORT=str(ports[0]))
            fleet.start("standby", "worker", "all", STRATEGIES_METRICS_PORT=str(ports[1]))
            yield fleet, [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        fleet.stop()


async def world(
    database_url: str,
    tmp_path: Path,
    kafka: str | None,
    ready: asyncio.Event,
    minute: asyncio.Future[datetime],
) -> dict[str, Any]:
    """Run one world through the scenario; what it saw, for the test to check. `ready` is
    set once it is enrolled; `minute` then says when its policy comes due."""
    trading = await asyncio.to_thread(PostgresTrading, database_url, chunk_size=2)
    try:
        with fleet_for(database_url, tmp_path, kafka) as (fleet, urls):
            strategy = await prepared(trading)
            await enroll(trading, strategy)
            if kafka is None:
                await healthy_with_scheduler(urls[0], fleet)
            ready.set()
            at = await minute
            policy = {
                "calendar": {"frequency": "daily", "time": at.strftime("%H:%M")},
                "drift_band": {"absolute": "0.05"},
            }
            await asyncio.to_thread(trading.set_policy, PLATFORM, uuid4(), strategy, policy)
            run = await first_run(trading, strategy, fleet)
            # Killed right after the period ran, and restarted: it must not run it again.
            fleet.restart("serve" if kafka is None else "leader")
            operation = await wait_terminal(trading, UUID(run["operation_id"]), timeout=DEADLINE_S)
            await asyncio.sleep(6)  # six more ticks of whichever scheduler leads now
            history = await asyncio.to_thread(
                lambda: list(trading.repository.event_store.get(strategy))
            )
            audit = await asyncio.to_thread(run_cli, fleet.env, "audit", "verify", timeout=300)
            probes = [await worker_probes(url, fleet) for url in urls] if kafka else []
            return {
                "strategy": strategy,
                "at": at,
                "runs": [
                    e for e in history if type(e).__qualname__ == "Strategy.PolicyRunRecorded"
                ],
                "operation": operation,
                "executions": await asyncio.to_thread(settled_codes, trading, operation),
                "audit": audit,
                "probes": probes,
                "logs": fleet.log_text(),
            }
    finally:
        await asyncio.to_thread(trading.close)


async def prepared(trading: PostgresTrading) -> UUID:
    await asyncio.to_thread(trading.ensure_default_catalogue)
    await asyncio.to_thread(trading.register_participants, PLATFORM, IN_LINE + DRIFTED)
    await asyncio.to_thread(trading.deposit_float, PLATFORM, "USD", Decimal("100000"), "P")
    strategy, _ = await asyncio.to_thread(
        trading.create_strategy,
        PLATFORM,
        uuid4(),
        {"quoted_currency": "USD", "allocations": BLUE_CHIP},
    )
    return strategy.id


async def enroll(trading: PostgresTrading, strategy: UUID) -> None:
    for codes, extra in ((IN_LINE, {}), (DRIFTED, {"allocations": SKEWED})):
        people = [
            {"participant_code": c, "amount": "100.00", "auto_rebalance": True} for c in codes
        ]
        operation, _ = await asyncio.to_thread(
            trading.request_operation,
            PLATFORM,
            strategy,
            uuid4(),
            OperationType.ENROLLMENT,
            {"participants": people, **extra},
        )
        done = await wait_terminal(trading, operation.id, timeout=DEADLINE_S)
        assert done.status is OperationStatus.SETTLED, done


async def healthy_with_scheduler(base_url: str, fleet: Fleet) -> None:
    """Over HTTP: serve is up and /health shows a live scheduler."""
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        for _ in range(int(DEADLINE_S * 2)):
            with contextlib.suppress(httpx.HTTPError):
                health = (await client.get("/health")).json()
                if health.get("roles", {}).get("scheduler", {}).get("live_processes"):
                    return
            await asyncio.sleep(0.5)
    raise AssertionError(f"serve never showed a live scheduler:\n{fleet.log_text()}")


async def worker_probes(base_url: str, fleet: Fleet) -> str:
    """A Kafka worker's own endpoint: live once it listens (the restarted leader may still be
    starting), then ready once its groups gave it partitions; its metrics text."""
    live = False
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        for _ in range(int(DEADLINE_S * 2)):
            try:
                live = live or (await client.get("/health/live")).status_code == 200
                if live and (await client.get("/health/ready")).status_code == 200:
                    return (await client.get("/metrics")).text
            except httpx.TransportError:
                assert not live, f"{base_url} stopped answering:\n{fleet.log_text()}"
            await asyncio.sleep(0.5)
    raise AssertionError(f"{base_url} never got ready (live: {live}):\n{fleet.log_text()}")


async def first_run(trading: PostgresTrading, strategy: UUID, fleet: Fleet) -> dict[str, Any]:
    for _ in range(int(DEADLINE_S * 4)):
        found = await asyncio.to_thread(trading.strategy, PLATFORM, strategy)
        if found.last_policy_run is not None:
            run: dict[str, Any] = found.last_policy_run
            return run
        await asyncio.sleep(0.25)
    raise AssertionError(f"the period never ran:\n{fleet.log_text()}")


def settled_codes(trading: PostgresTrading, operation: Operation) -> list[str]:
    codes = []
    for code in IN_LINE + DRIFTED:
        trader = trading.trader(PLATFORM, ids.trader_id(operation.strategy_id, code))
        events = trading.repository.event_store.get(trader.id)
        if any(getattr(e, "operation_id", None) == operation.id for e in events):
            codes.append(code)
    return sorted(codes)


@pytest.mark.timeout(900)
async def test_one_automatic_operation_per_period_across_kills_embedded_and_on_kafka(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    minute: asyncio.Future[datetime] = asyncio.get_running_loop().create_future()
    readies = [asyncio.Event(), asyncio.Event()]
    with (
        scratch_database(postgres_url, "sched_http") as embedded_url,
        scratch_database(postgres_url, "sched_kafka") as kafka_url,
    ):
        (tmp_path / "embedded").mkdir()
        (tmp_path / "kafka").mkdir()
        worlds = [
            asyncio.create_task(
                world(embedded_url, tmp_path / "embedded", None, readies[0], minute)
            ),
            asyncio.create_task(
                world(kafka_url, tmp_path / "kafka", kafka_bootstrap, readies[1], minute)
            ),
        ]
        # Both worlds wait for the same minute, chosen once both are enrolled.
        while not all(r.is_set() for r in readies):
            failed = [w for w in worlds if w.done() and w.exception()]
            if failed:
                await failed[0]
            await asyncio.sleep(0.2)
        minute.set_result(scheduled_minute())
        seen = await asyncio.gather(*worlds)
    for found in seen:
        logs = found["logs"]
        period = found["at"].date().isoformat()
        assert len(found["runs"]) == 1, logs
        (run,) = found["runs"]
        assert run.period == period and run.outside == len(DRIFTED), run
        operation: Operation = found["operation"]
        assert operation.id == run.operation_id
        assert operation.request_id == ids.policy_run_request_id(found["strategy"], period)
        assert operation.parameters["origin"] == "policy"
        assert operation.status is OperationStatus.SETTLED, operation
        assert found["executions"] == DRIFTED
        audit = found["audit"]
        assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-3000:]
        # Each Kafka worker's metrics show the stage calls it made.
        for text in found["probes"]:
            assert "strategies_stage_calls_total" in text
            assert "strategies_operations{" in text
