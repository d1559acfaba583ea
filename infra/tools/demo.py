"""`strategies demo`: the whole story on the real pipeline, with progress and a summary.

A platform with a funded float creates "Blue Chip Crypto" (BTC 50 / ETH 30 / SOL 20),
enrolls N simulated participants (a few ineligible), tops some up, rebalances everyone to new
weights, partially sells and liquidates a few. Then the Strategy gets a model and a weekly
policy with a 5-point drift band, a BTC promotion pushes one in twenty off the model, SOL
falls 8% on the simulated venue, and the policy's next run (the scheduler, asked at next
Monday 09:30 UTC) rebalances only the drifted. Commands go through the same CommandService as
`strategies.commands`; the stages run on the same handlers and bus as in production.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from domain.chunk import OperationChunk, chunk_id
from domain.commands import CancelOperation, OperationCommand, PreviewOperation, build_command
from domain.eligibility import ParticipantStatus
from domain.errors import OperationNotCancellableError
from domain.operation import Operation
from infra.bootstrap.engine import Engine
from infra.bus.messages import Command
from infra.tools.demo_story import (
    NEW_WEIGHTS,
    PLATFORM,
    WEEKLY_POLICY,
    Cast,
    Step,
    mistaken_top_up,
    promotion,
    story,
)
from workers.scheduler import PolicyScheduler

#: The simulated market move the policy reacts to (SOL down 8%).
SOL_MOVE = Decimal("0.92")


class DemoError(Exception):
    """Raised when a step of the demo is refused (the message says why)."""


@dataclass
class OperationReport:
    title: str
    type: str
    status: str
    status_reason: str
    in_scope: int
    settled: int
    skipped: int
    rejected: dict[str, int]
    prices: dict[str, str]
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)


async def run_demo(engine: Engine, traders: int, console: Console) -> list[OperationReport]:
    cast = Cast.of(traders)
    trading = engine.trading
    console.print(f"Registering {traders:,} participants and funding the platform float...")
    await engine.call(trading.register_participants, PLATFORM, cast.codes)
    await engine.call(
        trading.register_participants, PLATFORM, cast.suspended, ParticipantStatus.SUSPENDED
    )
    await engine.call(
        trading.register_participants, PLATFORM, cast.no_sol, ParticipantStatus.ACTIVE, ["SOL"]
    )
    # A reference per run: it is the deposit's idempotency key, and a second demo on the same
    # data folder is a second wire (the same reference would credit nothing, or conflict).
    wire = f"DEMO-FLOAT-{uuid4().hex[:12]}"
    await engine.call(trading.deposit_float, PLATFORM, "USD", cast.float_needed, wire)
    created = await _execute(
        engine,
        "create_strategy",
        None,
        {
            "quoted_currency": "USD",
            "metadata": {"platform_label": "Blue Chip Crypto"},
        },
    )
    strategy_id = UUID(created["id"])
    console.print(f"Strategy [bold]Blue Chip Crypto[/] {strategy_id}")
    reports: list[OperationReport] = []
    for step in story(cast):
        if step.command == "rebalance":
            await _preview(engine, strategy_id, step, console)
        reports.append(await _step(engine, strategy_id, step, console))
    await _execute(engine, "set_model", strategy_id, {"allocations": NEW_WEIGHTS})
    await _execute(engine, "set_policy", strategy_id, WEEKLY_POLICY)
    console.print(
        "Model: the new weights (version 1). Policy: weekly, Mondays 09:30 UTC, rebalance "
        "whoever is more than 5 points off."
    )
    reports.append(await _step(engine, strategy_id, promotion(cast), console))
    engine.venue.move("SOL", SOL_MOVE)
    console.print("Market: SOL falls 8% on the simulated venue.")
    reports.append(await _policy_run(engine, strategy_id, console))
    reports.append(await _cancelled(engine, strategy_id, mistaken_top_up(cast), console))
    return reports


async def _preview(engine: Engine, strategy_id: UUID, step: Step, console: Console) -> None:
    """What `step` would do, asked before it runs (nothing written): the exclusions by
    reason and the net block per asset, at the venue's indicative prices."""
    command = build_command(step.command, strategy_id=strategy_id, trader_id=None, body=step.body)
    assert isinstance(command, OperationCommand)
    found = await engine.commands.preview(PLATFORM, PreviewOperation(command, summary_only=True))
    counts = ", ".join(f"{n:,} {outcome}" for outcome, n in found.counts.items() if n)
    reasons = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(found.reasons.items()))
    blocks = ", ".join(
        f"{t.asset} {t.block.side.value} {t.block.quantity}" for t in found.totals if t.block
    )
    console.print(f"[bold]Preview[/] of the rebalance (nothing written): {counts}")
    console.print(f"  excluded by reason: {reasons or '-'}")
    console.print(f"  net blocks: {blocks or '-'}")


async def _cancelled(
    engine: Engine, strategy_id: UUID, step: Step, console: Console
) -> OperationReport:
    """Request `step` and cancel it at once: it ends cancelled, or, when its prices were
    locked already (a small cast checks fast), it runs to its end and the demo says so."""
    started = time.monotonic()
    resource = await _execute(engine, step.command, strategy_id, step.body)
    operation_id = UUID(resource["id"])
    try:
        await engine.commands.run(PLATFORM, uuid4(), CancelOperation(operation_id))
        console.print("Cancelled by the platform before its prices were locked.")
    except OperationNotCancellableError as too_late:
        console.print(f"Too late to cancel: {too_late.message}")
    stages = await _follow(engine, operation_id, step.title, console)
    return await _report(engine, operation_id, step.title, time.monotonic() - started, stages)


async def _step(engine: Engine, strategy_id: UUID, step: Step, console: Console) -> OperationReport:
    started = time.monotonic()
    resource = await _execute(engine, step.command, strategy_id, step.body)
    operation_id = UUID(resource["id"])
    stages = await _follow(engine, operation_id, step.title, console)
    return await _report(engine, operation_id, step.title, time.monotonic() - started, stages)


async def _policy_run(engine: Engine, strategy_id: UUID, console: Console) -> OperationReport:
    """The scheduler's run of the policy's next period (its clock set to next Monday 09:30
    UTC, so the demo need not wait for it): only the drifted Traders are rebalanced."""
    today = datetime.now(UTC)
    monday = today.date() + timedelta(days=7 - today.weekday())
    at = datetime.combine(monday, datetime.min.time(), UTC) + timedelta(hours=9, minutes=30)
    scheduler = PolicyScheduler(
        engine.trading,
        engine.venue,
        engine.commands,
        engine.call,
        _just(strategy_id),
        clock=lambda: at,
    )
    started = time.monotonic()
    outcomes = [o for o in await scheduler.tick() if o.strategy_id == strategy_id]
    if not outcomes or outcomes[0].operation_id is None:
        raise DemoError(f"the policy run requested nothing: {outcomes}")
    run = outcomes[0]
    strategy = await engine.call(engine.trading.strategy, PLATFORM, strategy_id)
    found = strategy.last_policy_run or {}
    console.print(
        f"Policy run {run.period}: {found.get('evaluated', 0):,} auto-rebalance Traders valued, "
        f"{found.get('outside', 0):,} outside the band."
    )
    title = f"Policy run {run.period}: the drifted only"
    operation_id = UUID(run.operation_id)
    stages = await _follow(engine, operation_id, title, console)
    return await _report(engine, operation_id, title, time.monotonic() - started, stages)


def _just(strategy_id: UUID) -> Any:
    async def listed() -> list[UUID]:
        return [strategy_id]

    return listed


async def _execute(
    engine: Engine, command: str, strategy_id: UUID | None, body: dict[str, Any]
) -> dict[str, Any]:
    result = await engine.commands.execute(
        PLATFORM,
        uuid4(),
        Command(command=command, strategy_id=strategy_id, body=body),
    )
    if result.error is not None or result.resource is None:
        raise DemoError(f"{command} was refused: {result.error}")
    return result.resource


async def _follow(
    engine: Engine, operation_id: UUID, title: str, console: Console
) -> dict[str, float]:
    """Show chunk progress per stage until the Operation is terminal; returns stage times."""
    columns = (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    started, stages = time.monotonic(), dict[str, float]()
    with Progress(*columns, console=console, transient=False) as progress:
        console.print(f"[bold]{title}[/]")
        operation: Operation = await engine.call(engine.trading.operation, operation_id)
        total = max(operation.chunk_count, 1)
        checked = progress.add_task("credit check (chunks)", total=total)
        settled = progress.add_task("settlement (chunks)", total=total)
        while not operation.status.terminal:
            await asyncio.sleep(0.2)
            operation = await engine.call(engine.trading.operation, operation_id)
            states = Counter(operation.chunks.values())
            done_checking = total - states["planned"]
            progress.update(checked, completed=done_checking)
            progress.update(settled, completed=states["settled"] + states["released"])
            if done_checking == total:
                stages.setdefault("check", time.monotonic() - started)
            if operation.locked_prices:
                stages.setdefault("priced", time.monotonic() - started)
        progress.update(checked, completed=total)
        progress.update(settled, completed=total)
    stages["settled"] = time.monotonic() - started
    return stages


async def _report(
    engine: Engine, operation_id: UUID, title: str, seconds: float, stages: dict[str, float]
) -> OperationReport:
    operation: Operation = await engine.call(engine.trading.operation, operation_id)
    chunks = await engine.call(
        engine.trading.get_many, [chunk_id(operation_id, i) for i in range(operation.chunk_count)]
    )
    rejected: Counter[str] = Counter()
    for chunk in chunks.values():
        assert isinstance(chunk, OperationChunk)
        for decision in chunk.decisions.values():
            if decision["outcome"] in ("rejected", "cancelled"):
                rejected[decision["reasons"].split(",")[0]] += 1
    by_policy = operation.parameters.get("origin") == "policy"
    return OperationReport(
        title=title,
        type=operation.type.value + (" (policy)" if by_policy else ""),
        status=operation.status.value,
        status_reason=operation.status_reason.value,
        in_scope=operation.participant_count,
        settled=operation.counts["settled"],
        skipped=operation.counts["skipped"],
        rejected=dict(rejected),
        prices={a: q["price"] for a, q in sorted(operation.locked_prices.items())},
        seconds=seconds,
        stages=stages,
    )


def summary_table(reports: list[OperationReport]) -> Table:
    table = Table(title="Operations", show_lines=True)
    for column in (
        "type",
        "status",
        "in scope",
        "settled",
        "skipped",
        "excluded by reason",
        "locked prices (USD)",
        "duration",
    ):
        table.add_column(column)
    for report in reports:
        status = report.status + (f" ({report.status_reason})" if report.status_reason else "")
        rejected = (
            "\n".join(f"{reason}: {n}" for reason, n in sorted(report.rejected.items())) or "-"
        )
        prices = "\n".join(f"{asset} {price}" for asset, price in report.prices.items()) or "-"
        table.add_row(
            report.type,
            status,
            f"{report.in_scope:,}",
            f"{report.settled:,}",
            f"{report.skipped:,}",
            rejected,
            prices,
            f"{report.seconds:.1f} s",
        )
    return table
