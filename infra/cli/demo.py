"""`strategies demo`: the README's main command."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from infra.bootstrap.engine import Engine
from infra.bootstrap.probes_server import serve_probes
from infra.bus.memory import InProcessBus
from infra.cli.database import ready_database
from infra.cli.tables import print_whole
from infra.logging import configure_logging
from infra.settings import Settings
from infra.tools.demo import DemoError, run_demo, summary_table


def demo(
    ctx: typer.Context,
    traders: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Simulated participants.")
    ] = 10_000,
    kafka: Annotated[
        bool,
        typer.Option("--kafka", help="Run the stages over the broker in KAFKA_BOOTSTRAP_SERVERS."),
    ] = False,
    chunk_size: Annotated[int, typer.Option(min=1, help="Traders per chunk.")] = 500,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show the engine's log lines.")
    ] = False,
) -> None:
    """Run the whole story on the engine: enroll, top up, rebalance, sell and liquidate.

    By default everything runs here on the embedded PostgreSQL and the in-process bus; with
    --kafka the stages go through the configured Kafka broker (start one with
    `strategies kafka start`). With STRATEGIES_METRICS_PORT set, /metrics and the probes
    answer there while it runs.
    """
    settings: Settings = ctx.obj
    if kafka and not settings.kafka.bootstrap_servers:
        typer.echo(
            "error: --kafka needs KAFKA_BOOTSTRAP_SERVERS "
            "(for a local broker: export KAFKA_BOOTSTRAP_SERVERS=$(strategies kafka start))",
            err=True,
        )
        raise typer.Exit(code=2)
    # The root quiets one-shot commands; the demo's --verbose brings the engine's lines back.
    quiet = settings.model_copy(update={"log_level": "WARNING"})
    configure_logging(settings if verbose else quiet, force=True)
    console = Console(width=max(Console().width, 120))
    with ready_database(settings) as url:
        try:
            asyncio.run(_run(settings, url, traders, kafka, chunk_size, console))
        except DemoError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=1) from None


async def _run(
    settings: Settings, url: str, traders: int, kafka: bool, chunk_size: int, console: Console
) -> None:
    bus = None if kafka else InProcessBus()
    async with Engine(settings, url, ["all"], bus=bus, chunk_size=chunk_size) as engine:
        # As a worker does: /metrics and the probes on STRATEGIES_METRICS_PORT, when set,
        # so Prometheus (or a test) can watch the story run.
        probes = None
        if settings.metrics_port is not None:
            probes = await serve_probes(
                settings.metrics_host, settings.metrics_port, engine.readiness
            )
        try:
            reports = await run_demo(engine, traders, console)
        finally:
            if probes is not None:
                probes.close()
    print_whole(console, summary_table(reports))
