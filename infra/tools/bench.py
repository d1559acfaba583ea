"""`strategies bench`: what the engine does per second, how its cost grows, and how close it
runs to the machine's own ceilings (PostgreSQL COPY, the broker's produce/consume rate).

Each Operation of the story is timed from its request until it is terminal AND the read
models show it (every Execution projected), with a per-stage breakdown read from the
Operation's own event timestamps. Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import platform
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import psutil

from domain.commands import build_command
from domain.eligibility import ParticipantStatus
from infra.bootstrap.engine import Engine
from infra.bus.messages import CommandName
from infra.cpu_meter import CPU
from infra.settings_kafka import KafkaConnection

PLATFORM = "BENCH"
ALLOCATIONS = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
NEW_WEIGHTS = [
    {"underlying_currency": "BTC", "weight": "0.40"},
    {"underlying_currency": "ETH", "weight": "0.40"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]


@dataclass
class OperationFigures:
    traders: int
    type: str
    status: str
    seconds: float
    check_s: float
    pricing_s: float
    execution_s: float
    projection_lag_s: float
    events: int
    #: Operations the step took (a request names at most 10,000 participants).
    operations: int = 1
    #: Python CPU microseconds per Trader by stage, measured in this process (embedded mode
    #: only: with Kafka the stages run in the worker processes). "loop" is the event loop's
    #: thread: the relay's publishing, the in-process bus and, with inline projections, the
    #: read models, which interleave. "project" is the read models' child process (all of
    #: its CPU), when they run in one.
    cpu_us_per_trader: dict[str, float] = field(default_factory=dict)

    @property
    def per_trader_ms(self) -> float:
        return self.seconds * 1000 / max(self.traders, 1)


@dataclass
class RunFigures:
    mode: str
    workers: int
    traders: int
    operations: list[OperationFigures] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    #: Rows PostgreSQL inserted, updated or deleted in our tables during the story (events,
    #: snapshots, roster, read models, offsets, webhooks), from pg_stat_user_tables.
    rows_written: int = 0

    @property
    def rows_per_trader_per_operation(self) -> float:
        steps = len(self.operations) * max(self.traders, 1)
        return self.rows_written / steps if steps else 0.0

    @property
    def rows_per_second(self) -> float:
        seconds = sum(o.seconds for o in self.operations)
        return self.rows_written / seconds if seconds else 0.0

    @property
    def events_per_second(self) -> float:
        seconds = sum(o.seconds for o in self.operations)
        return sum(o.events for o in self.operations) / seconds if seconds else 0.0


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
    }


_PACKAGES = ("eventsourcing", "psycopg", "asyncpg", "aiokafka", "faststream", "pydantic")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def server_versions(pool: asyncpg.Pool) -> dict[str, str]:
    async with pool.acquire() as connection:
        return {"postgresql": str(await connection.fetchval("SHOW server_version"))}


def growth(runs: list[RunFigures]) -> list[dict[str, Any]]:
    """Cost per trader at each N over the cost at the next smaller N of the same mode,
    workers and operation: 1.0 is linear, above it the engine gets dearer per trader."""
    found = []
    for run in runs:
        smaller = [
            r
            for r in runs
            if (r.mode, r.workers) == (run.mode, run.workers) and r.traders < run.traders
        ]
        if not smaller:
            continue
        base = max(smaller, key=lambda r: r.traders)
        for operation in run.operations:
            first = next((o for o in base.operations if o.type == operation.type), None)
            if first is None or not first.per_trader_ms:
                continue
            found.append(
                {
                    "mode": run.mode,
                    "workers": run.workers,
                    "operation": operation.type,
                    "traders": run.traders,
                    "versus": base.traders,
                    "ratio": operation.per_trader_ms / first.per_trader_ms,
                }
            )
    return found


async def copy_ceiling(pool: asyncpg.Pool, rows: int) -> float:
    """Rows per second PostgreSQL takes by COPY into a table shaped like the event store."""
    payload = b"x" * 300
    records = [(uuid4(), i, "domain.trader:Trader.Settled", payload) for i in range(rows)]
    async with pool.acquire() as connection:
        await connection.execute(
            "CREATE TEMP TABLE bench_copy (originator_id uuid, originator_version int, "
            "topic text, state bytea)"
        )
        started = time.perf_counter()
        await connection.copy_records_to_table("bench_copy", records=records)
        elapsed = time.perf_counter() - started
        await connection.execute("DROP TABLE bench_copy")
    return rows / elapsed


async def broker_ceiling(
    bootstrap: str, messages: int, size: int = 400, connection: KafkaConnection | None = None
) -> dict[str, float]:
    """The broker's produce and end-to-end consume rate for records of the pipeline's size,
    through our own bus (batched consumer, as the events topic is read)."""
    from infra.bus import Delivery, Record
    from infra.bus.kafka import KafkaBus

    topic = f"bench-ceiling-{uuid4().hex[:8]}"
    done = asyncio.Event()
    seen = 0

    async def count(run: list[Delivery]) -> None:
        nonlocal seen
        seen += len(run)
        if seen >= messages:
            done.set()

    bus = KafkaBus(bootstrap, client_id="bench", connection=connection)
    bus.subscribe_batch(topic, f"bench-{uuid4().hex[:8]}", count)
    await bus.start()
    try:
        value = b"x" * size
        started = time.perf_counter()
        await bus.publish_many([Record(topic, value, key=str(i % 500)) for i in range(messages)])
        produced = time.perf_counter() - started
        await asyncio.wait_for(done.wait(), timeout=300)
        consumed = time.perf_counter() - started
    finally:
        await bus.stop()
    return {"produce_per_s": messages / produced, "consume_per_s": messages / consumed}


#: The story's steps, in order; `strategies bench --steps` runs a subset.
STORY_STEPS = ("enroll", "top_up", "rebalance", "partial_sell", "liquidate")
#: Participants registered per save (a million in one save would be a ~400 MB message).
REGISTER_BATCH = 10_000


async def run_story(
    engine: Engine,
    traders: int,
    workers: list[psutil.Process],
    steps: Sequence[str] = STORY_STEPS,
    progress: Callable[[str], None] = lambda _: None,
) -> RunFigures:
    """`progress` gets a line after the registration and after each step: a million-Trader
    step runs for many minutes."""
    trading = engine.trading
    codes = [f"B{i:07d}" for i in range(traders)]
    started = time.perf_counter()
    for start in range(0, traders, REGISTER_BATCH):
        batch = codes[start : start + REGISTER_BATCH]
        await engine.call(trading.register_participants, PLATFORM, batch, ParticipantStatus.ACTIVE)
    progress(f"  registered {traders:,} participants in {time.perf_counter() - started:.1f} s")
    await engine.call(
        trading.deposit_float, PLATFORM, "USD", Decimal(traders) * Decimal("2000"), "BENCH"
    )
    created = await _run(engine, "create_strategy", None, {"quoted_currency": "USD"})
    strategy = UUID(created["id"])
    story: dict[CommandName, tuple[dict[str, Any], str | None]] = {
        "enroll": ({"allocations": ALLOCATIONS}, "1000.00"),
        "top_up": ({"allocations": ALLOCATIONS}, "100.00"),
        "rebalance": ({"allocations": NEW_WEIGHTS}, None),
        "partial_sell": ({"allocations": NEW_WEIGHTS}, "50.00"),
        "liquidate": ({"all": True}, None),
    }
    figures = RunFigures("", 0, traders)
    memory = MemoryWatch(engine, workers)
    rows_before = await rows_written(engine.pool)
    for command in [c for c in story if c in steps]:
        body, amount = story[command]
        before = await asyncio.to_thread(trading.recorder.max_notification_id) or 0
        cpu_before, loop_before = CPU.totals(), time.thread_time()
        projector_before = _projector_cpu(engine)
        started = time.perf_counter()
        # A request names at most the configured participants (10,000 by default): a bigger N
        # goes as several Operations at once, as a platform would send them, and is timed
        # until the last is done.
        parts = _per_call(body, codes, amount, command == "enroll", engine.limits.max_participants)
        requests = [await _run(engine, command, strategy, part) for part in parts]
        operation_ids = [UUID(r["id"]) for r in requests]
        terminal_at = 0.0
        for operation_id in operation_ids:
            terminal_at = max(terminal_at, await _until_terminal(engine, operation_id, memory))
        for operation_id in operation_ids:
            await _until_projected(engine, operation_id)
        projected_at = time.perf_counter()
        cpu = _cpu_per_trader(cpu_before, loop_before, len(codes))
        projector = _projector_cpu(engine)
        if projector and projector_before and projector[0] == projector_before[0]:
            cpu["project"] = round((projector[1] - projector_before[1]) * 1e6 / len(codes), 1)
        after = await asyncio.to_thread(trading.recorder.max_notification_id) or 0
        stages = [await asyncio.to_thread(_stage_times, trading, o) for o in operation_ids]
        operations = [await engine.call(trading.operation, o) for o in operation_ids]
        statuses = sorted({o.status.value for o in operations})
        figures.operations.append(
            OperationFigures(
                traders=sum(o.participant_count for o in operations),
                type=operations[0].type.value,
                status=statuses[0] if len(statuses) == 1 else "/".join(statuses),
                seconds=projected_at - started,
                check_s=max(s["check"] for s in stages),
                pricing_s=max(s["pricing"] for s in stages),
                execution_s=max(s["execution"] for s in stages),
                projection_lag_s=projected_at - terminal_at,
                events=after - before,
                operations=len(operations),
                cpu_us_per_trader=cpu,
            )
        )
        peak = memory.sample()
        done = figures.operations[-1]
        progress(
            f"  {command}: {done.operations} operation(s) {done.status} in {done.seconds:.1f} s "
            f"(check {done.check_s:.1f}, pricing {done.pricing_s:.1f}, execution "
            f"{done.execution_s:.1f}), peak RSS {peak:.0f} MB"
        )
    figures.peak_rss_mb = memory.sample()
    await asyncio.sleep(STATS_FLUSH_S)
    figures.rows_written = await rows_written(engine.pool) - rows_before
    return figures


#: PostgreSQL's backends publish their table counters within about ten seconds when idle.
STATS_FLUSH_S = 11.0


async def rows_written(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as connection:
        found = await connection.fetchval(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        )
    return int(found)


def _cpu_per_trader(before: dict[str, float], loop_before: float, traders: int) -> dict[str, float]:
    """Microseconds of CPU per Trader by stage since `before` (see `infra.cpu_meter`)."""
    spent = {k: v - before.get(k, 0.0) for k, v in CPU.totals().items()}
    spent["loop"] = time.thread_time() - loop_before
    return {k: round(v * 1e6 / max(traders, 1), 1) for k, v in sorted(spent.items()) if v > 0}


def _projector(engine: Engine) -> psutil.Process | None:
    """The read models' child process as it is now (a restart gives it a new pid)."""
    pid = engine.projector.pid if engine.projector else None
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _projector_cpu(engine: Engine) -> tuple[int, float] | None:
    """The read models' child process and its CPU seconds so far (None: there is none)."""
    process = _projector(engine)
    if process is None:
        return None
    try:
        times = process.cpu_times()
    except psutil.Error:
        return None
    return process.pid, float(times.user + times.system)


def _per_call(
    body: dict[str, Any], codes: list[str], amount: str | None, auto: bool, most: int
) -> Iterator[dict[str, Any]]:
    """The step's requests: `body` alone when it names nobody, else one per `most`
    participants, each made only when sent (a million participants' dicts at once would
    weigh more than the engine)."""
    if amount is None:
        yield body
        return
    for start in range(0, len(codes), most):
        yield {**body, "participants": _funded(codes[start : start + most], amount, auto)}


def _funded(codes: list[str], amount: str, auto: bool = False) -> list[dict[str, Any]]:
    return [{"participant_code": c, "amount": amount, "auto_rebalance": auto} for c in codes]


async def _run(
    engine: Engine, command: CommandName, strategy: UUID | None, body: dict[str, Any]
) -> dict[str, Any]:
    order = build_command(command, strategy_id=strategy, trader_id=None, body=body)
    _kind, created, _new = await engine.commands.run(PLATFORM, uuid4(), order)
    return created


async def _until_terminal(engine: Engine, operation_id: UUID, memory: MemoryWatch) -> float:
    while True:
        operation = await engine.call(engine.trading.operation, operation_id)
        if operation.status.terminal:
            return time.perf_counter()
        memory.sample()
        memory.require_workers()
        await asyncio.sleep(0.1)


async def _until_projected(engine: Engine, operation_id: UUID) -> None:
    """Terminal in the read models, with every Execution of the Operation projected."""
    operation = await engine.call(engine.trading.operation, operation_id)
    while True:
        async with engine.pool.acquire() as connection:
            status = await connection.fetchval(
                "SELECT status FROM operations WHERE id = $1", operation_id
            )
            executions = await connection.fetchval(
                "SELECT count(*) FROM executions WHERE platform_id = $1 AND operation_id = $2 "
                "AND status IN ('settled', 'skipped', 'rejected')",
                PLATFORM,
                operation_id,
            )
        if status == operation.status.value and executions >= operation.participant_count:
            return
        await asyncio.sleep(0.1)


def _stage_times(trading: Any, operation_id: UUID) -> dict[str, float]:
    """Durations between the Operation's own events: request → pricing → locked → terminal."""
    marks: dict[str, float] = {}
    for event in trading.events.get(operation_id):
        name = type(event).__name__
        stamp = event.timestamp.timestamp()
        if name == "Requested":
            marks["requested"] = stamp
        elif name == "StatusChanged" and event.status == "pricing":
            marks["pricing"] = stamp
        elif name == "PricesLocked":
            marks["locked"] = stamp
        elif name == "StatusChanged" and event.status in ("settled", "skipped", "failed"):
            marks["terminal"] = stamp
    requested = marks.get("requested", 0.0)
    pricing = marks.get("pricing", marks.get("terminal", requested))
    locked = marks.get("locked", pricing)
    terminal = marks.get("terminal", locked)
    return {
        "check": pricing - requested,
        "pricing": locked - pricing,
        "execution": terminal - locked,
    }


class WorkerDiedError(RuntimeError):
    pass


class MemoryWatch:
    """The peak resident memory, in MB, of any process of the run: this one (its own peak,
    ru_maxrss), the worker processes and the read models' child (sampled every tenth of a
    second while an Operation runs)."""

    def __init__(self, engine: Engine, workers: list[psutil.Process]) -> None:
        self.engine = engine
        self.workers = workers
        self.peak = 0.0

    def sample(self) -> float:
        found = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]
        child = _projector(self.engine)
        for process in [*self.workers, *([child] if child else [])]:
            try:
                found.append(process.memory_info().rss / 2**20)
            except psutil.Error:
                continue
        self.peak = max(self.peak, *found)
        return self.peak

    def require_workers(self) -> None:
        """A worker that died would leave the run waiting forever: fail it, naming it."""
        for process in self.workers:
            try:
                alive = process.status() != psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                alive = False
            if not alive:
                raise WorkerDiedError(f"worker process {process.pid} exited during the run")


def ratios(run: RunFigures, ceilings: dict[str, Any]) -> dict[str, float | None]:
    """The run's event rate as a share of the machine's ceilings. Each event is one record on
    the events topic, the bulk of the pipeline's messages (stage tasks are one per chunk)."""
    copy_rate = ceilings.get("copy_rows_per_s")
    broker = ceilings.get("broker") or {}
    consume = broker.get("consume_per_s")
    rate = run.events_per_second
    return {
        "events_vs_copy": rate / copy_rate if copy_rate else None,
        "rows_vs_copy": run.rows_per_second / copy_rate if copy_rate else None,
        "messages_vs_broker": rate / consume if consume and run.mode == "kafka" else None,
    }


def as_json(
    ceilings: dict[str, Any], runs: list[RunFigures], versions: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "machine": {**machine(), **(versions or {})},
        "ceilings": ceilings,
        "growth": growth(runs),
        "runs": [
            {
                **{k: v for k, v in asdict(run).items() if k != "operations"},
                "events_per_second": run.events_per_second,
                "rows_per_second": run.rows_per_second,
                "rows_per_trader_per_operation": run.rows_per_trader_per_operation,
                **ratios(run, ceilings),
                "operations": [
                    {**asdict(o), "per_trader_ms": o.per_trader_ms} for o in run.operations
                ],
            }
            for run in runs
        ],
    }
