"""`strategies bench`: the benchmark harness's command (figures only, see infra/tools/bench.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from uuid import uuid4

import asyncpg
import psutil
import typer
from rich.console import Console
from rich.table import Table

from infra.bootstrap.children import ROOT, strategies_command
from infra.bootstrap.engine import Engine
from infra.bootstrap.schema import migrate_database
from infra.bus.memory import InProcessBus
from infra.cli.tables import print_whole
from infra.devservices.database import database_url
from infra.logging import configure_logging
from infra.settings import Settings
from infra.tools.bench import (
    STORY_STEPS,
    RunFigures,
    WorkerDiedError,
    as_json,
    broker_ceiling,
    copy_ceiling,
    growth,
    ratios,
    run_story,
    server_versions,
)

#: Rows the COPY ceiling is measured with, at most (held in memory while it runs).
COPY_SAMPLE_MAX = 600_000


def bench(
    ctx: typer.Context,
    traders: Annotated[
        str, typer.Option(help="Comma-separated trader counts.")
    ] = "1000,10000,100000",
    mode: Annotated[str, typer.Option(help="embedded, kafka or both.")] = "both",
    workers: Annotated[
        str, typer.Option(help="Worker processes for kafka runs (comma-separated).")
    ] = "1,2,4",
    steps: Annotated[
        str,
        typer.Option(
            help="Story steps to run, comma-separated, in story order (default: all): "
            + ",".join(STORY_STEPS)
            + ". A million traders: --steps enroll,rebalance."
        ),
    ] = ",".join(STORY_STEPS),
    output: Annotated[
        Path | None, typer.Option(help="JSON file (default bench/results/<time>.json).")
    ] = None,
) -> None:
    """Measure the machine's ceilings, then run the story (enroll, top-up, rebalance, partial
    sell, liquidate) at each N in each mode, and print the figures (nothing is asserted)."""
    settings: Settings = ctx.obj
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}), force=True)
    counts = [int(n) for n in traders.split(",") if n.strip()]
    chosen_steps = [step.strip() for step in steps.split(",") if step.strip()]
    if not chosen_steps or any(step not in STORY_STEPS for step in chosen_steps):
        typer.echo(f"error: --steps names some of {', '.join(STORY_STEPS)}", err=True)
        raise typer.Exit(code=2)
    pool_sizes = [int(w) for w in workers.split(",") if w.strip()]
    modes = ["embedded", "kafka"] if mode == "both" else [mode]
    if any(m not in ("embedded", "kafka") for m in modes) or not counts:
        typer.echo(
            "error: --mode is embedded, kafka or both, and --traders names at least one N", err=True
        )
        raise typer.Exit(code=2)
    console = Console(width=max(Console().width, 120))
    with ExitStack() as stack:
        server = stack.enter_context(database_url(settings))
        bootstrap = _broker(settings, stack) if "kafka" in modes else None
        try:
            result = asyncio.run(
                _bench(
                    settings, server, bootstrap, counts, modes, pool_sizes, chosen_steps, console
                )
            )
        except WorkerDiedError as died:
            typer.echo(f"error: {died}", err=True)
            raise typer.Exit(code=1) from None
    target = output or ROOT / "bench" / "results" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, default=str))
    console.print(f"figures written to {target}")


def _broker(settings: Settings, stack: ExitStack) -> str:
    if settings.kafka.bootstrap_servers:
        return settings.kafka.bootstrap_servers
    from infra.devservices.kafka.launcher import LocalKafka

    kafka = stack.enter_context(LocalKafka(home=settings.data_dir / "bench-kafka"))
    return kafka.bootstrap


async def _bench(
    settings: Settings,
    server: str,
    bootstrap: str | None,
    counts: list[int],
    modes: list[str],
    pool_sizes: list[int],
    steps: list[str],
    console: Console,
) -> dict[str, object]:
    pool = await asyncpg.create_pool(server, min_size=1, max_size=2)
    copy_rows = min(max(counts) * 6, COPY_SAMPLE_MAX)
    ceilings: dict[str, object] = {"copy_rows_per_s": await copy_ceiling(pool, copy_rows)}
    versions = await server_versions(pool)
    await pool.close()
    if bootstrap:
        from infra.devservices.kafka.config import kafka_version

        versions["kafka"] = kafka_version()
    if bootstrap:
        # The configured cluster's security options; the local broker is plain.
        connection = settings.kafka.connection if settings.kafka.bootstrap_servers else None
        ceilings["broker"] = await broker_ceiling(
            bootstrap, min(max(counts) * 4, 200_000), connection=connection
        )
    console.print(f"ceilings: {ceilings}")
    runs: list[RunFigures] = []
    for chosen in modes:
        for workers in pool_sizes if chosen == "kafka" else [0]:
            for count in counts:
                console.print(f"[bold]{chosen}[/] workers={workers} traders={count:,} ...")
                run = await _one_run(
                    settings, server, bootstrap, chosen, workers, count, steps, console.print
                )
                runs.append(run)
                print_whole(console, _table([run], ceilings))
    print_whole(console, _table(runs, ceilings))
    print_whole(console, _growth_table(runs))
    return as_json(ceilings, runs, versions)


async def _one_run(
    settings: Settings,
    server: str,
    bootstrap: str | None,
    mode: str,
    workers: int,
    count: int,
    steps: list[str],
    progress: Callable[[str], None],
) -> RunFigures:
    url = await _fresh_database(server)
    prefix = f"bench-{uuid4().hex[:8]}"
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    local = settings.model_copy(
        update={
            "database_url": None,
            "kafka_bootstrap_servers": bootstrap if mode == "kafka" else None,
            "topic_prefix": prefix,
            "master_key": key,
        }
    )
    processes: list[subprocess.Popen[bytes]] = []
    if mode == "kafka":
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap or "",
            "STRATEGIES_TOPIC_PREFIX": prefix,
            "STRATEGIES_MASTER_KEY": key,
            "STRATEGIES_LOG_LEVEL": "WARNING",
        }
        processes = [_start_worker(env) for _ in range(workers)]
        await asyncio.sleep(3)  # let the workers join their groups before the first request
    roles = () if mode == "kafka" else ("all",)
    bus = None if mode == "kafka" else InProcessBus()
    try:
        async with Engine(local, url, roles, bus=bus) as engine:
            watch = [psutil.Process(p.pid) for p in processes]
            run = await run_story(engine, count, watch, steps, progress)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=120)
    run.mode, run.workers = mode, workers
    return run


def _start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        strategies_command("worker", "all"),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _fresh_database(server: str) -> str:
    name = f"bench_{uuid4().hex[:10]}"
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    url = server.rsplit("/", 1)[0] + f"/{name}"
    await migrate_database(url)  # the bench's own database: its workers find it current
    return url


def _table(runs: list[RunFigures], ceilings: dict[str, object]) -> Table:
    table = Table(title="Benchmark (seconds from request until terminal and projected)")
    for column in (
        "mode",
        "workers",
        "N",
        "operation",
        "status",
        "total s",
        "check s",
        "pricing s",
        "execution s",
        "projection lag s",
        "ms/trader",
        "events/s",
        "CPU µs/trader",
        "peak RSS MB",
    ):
        table.add_column(column, justify="right")
    for run in runs:
        for o in run.operations:
            table.add_row(
                run.mode,
                str(run.workers),
                f"{run.traders:,}",
                o.type,
                o.status,
                f"{o.seconds:.1f}",
                f"{o.check_s:.1f}",
                f"{o.pricing_s:.1f}",
                f"{o.execution_s:.1f}",
                f"{o.projection_lag_s:.1f}",
                f"{o.per_trader_ms:.2f}",
                f"{o.events / o.seconds:,.0f}" if o.seconds else "-",
                " ".join(f"{k} {v:.0f}" for k, v in o.cpu_us_per_trader.items()) or "-",
                f"{run.peak_rss_mb:.0f}",
            )
    if runs:
        parts = []
        for run in runs:
            shares = ratios(run, ceilings)
            copy_share = shares["events_vs_copy"] or 0.0
            text = f"{run.mode}/{run.workers}/{run.traders:,}: {copy_share:.1%} of COPY"
            text += f" (rows {shares['rows_vs_copy'] or 0.0:.1%},"
            text += f" {run.rows_per_trader_per_operation:.1f} rows per trader per operation)"
            if shares["messages_vs_broker"] is not None:
                text += f", {shares['messages_vs_broker']:.0%} of the broker"
            parts.append(text)
        table.caption = "events/s as a share of the ceilings: " + "; ".join(parts)
    return table


def _growth_table(runs: list[RunFigures]) -> Table:
    table = Table(title="Cost per trader against the next smaller N (1.0 = linear)")
    for column in ("mode", "workers", "operation", "N", "versus N", "ratio"):
        table.add_column(column, justify="right")
    for row in growth(runs):
        table.add_row(
            row["mode"],
            str(row["workers"]),
            row["operation"],
            f"{row['traders']:,}",
            f"{row['versus']:,}",
            f"{row['ratio']:.2f}",
        )
    return table
