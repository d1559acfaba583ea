"""`strategies worker ROLE...`: run pipeline roles in this process until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Annotated

import typer

from infra.bootstrap.engine import Engine, resolve_roles
from infra.bootstrap.probes_server import serve_probes
from infra.cli.database import ready_database
from infra.cli.master_key import require_secret_box
from infra.cli.signals import stop_on_signals
from infra.logging import get_logger
from infra.postgres.heartbeats import ROLES
from infra.settings import Settings
from infra.tracing import tracing

log = get_logger("infra.cli.worker")


def worker(
    ctx: typer.Context,
    roles: Annotated[
        list[str],
        typer.Argument(
            help=f"One or more of: {', '.join(ROLES)}, or 'all'. Without "
            "KAFKA_BOOTSTRAP_SERVERS only 'all' is possible (the roles share an in-process bus).",
            show_default=False,
        ),
    ],
    chunk_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Traders per chunk for Operations requested here (STRATEGIES_CHUNK_SIZE)."
        ),
    ] = None,
) -> None:
    """Run stage workers, the outbox relay, the command consumer or projections.

    SIGTERM or Ctrl-C stops consuming, lets in-flight messages finish and exits cleanly (0).
    A drain that outlasts STRATEGIES_DRAIN_TIMEOUT_S, or a second signal, ends the process
    at once (exit 1); whatever was in flight is redelivered to the next worker.
    """
    settings: Settings = ctx.obj
    try:
        resolve_roles(roles)
        if not settings.kafka.bootstrap_servers and resolve_roles(roles) != set(ROLES):
            raise ValueError(
                "without KAFKA_BOOTSTRAP_SERVERS the roles share an in-process bus: "
                "run 'strategies worker all', or set KAFKA_BOOTSTRAP_SERVERS"
            )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    with stop_on_signals():
        _start(settings, roles, chunk_size)


def _start(settings: Settings, roles: list[str], chunk_size: int | None) -> None:
    if "webhooks" in resolve_roles(roles):
        # the sender signs with the subscriptions' secrets: without the key it would only
        # log that it cannot, and deliveries would wait forever
        require_secret_box(settings)
    service = "strategies-worker-" + "-".join(roles)
    with ready_database(settings) as url, tracing(settings, service):
        asyncio.run(_run(settings, url, roles, chunk_size))


async def _run(settings: Settings, url: str, roles: list[str], chunk_size: int | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    engine = await Engine(settings, url, roles, chunk_size=chunk_size).start()
    probes = None
    if settings.metrics_port is not None:
        probes = await serve_probes(settings.metrics_host, settings.metrics_port, engine.readiness)
    await stop.wait()
    if probes is not None:
        probes.close()
    log.info("worker.draining")
    again = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, again.set)
    draining = asyncio.ensure_future(engine.stop())
    interrupted = asyncio.ensure_future(again.wait())
    await asyncio.wait(
        {draining, interrupted},
        timeout=settings.drain_timeout_s,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if draining.done():
        interrupted.cancel()
        draining.result()
        return
    # Cancelling the drain could wait on a stuck broker or database as long as the drain
    # itself: leave at once. Nothing is lost: uncommitted records are delivered again and
    # every handler is idempotent.
    log.error(
        "worker.drain_abandoned",
        reason="second signal" if interrupted.done() else "timeout",
        timeout_s=settings.drain_timeout_s,
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)
