"""`strategies`: the one command line of the project (console script `infra.cli:main`).

The root callback reads the settings and configures logging once; sub-commands find the
settings on the click context. Long-running commands stop what they started (the embedded
PostgreSQL server) on SIGTERM and SIGINT as well as on a normal exit.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import typer
import uvicorn

from infra.bus.asyncapi import asyncapi_document
from infra.cli import admin as cli_admin
from infra.cli import bench as cli_bench
from infra.cli import db as cli_db
from infra.cli import demo as cli_demo
from infra.cli import env as cli_env
from infra.cli import master_key as cli_master_key

# imported for its effect: it adds `projections poisoned` to cli_admin's group
from infra.cli import projections as cli_projections  # noqa: F401
from infra.cli import webhooks as cli_webhooks
from infra.cli import worker as cli_worker
from infra.cli.audit import app as audit_app
from infra.cli.database import ready_database
from infra.cli.http_server import server_config
from infra.cli.platform import app as platform_app
from infra.cli.signals import stop_on_signals
from infra.collector import tune_collector
from infra.devservices.kafka.cli import app as kafka_app
from infra.logging import configure_logging, get_logger
from infra.postgres.master_key import MasterKeyError
from infra.settings import Settings, SettingsError, load_settings
from infra.tracing import tracing

log = get_logger("infra.cli")

app = typer.Typer(
    name="strategies",
    help="Portfolio strategies: event-sourced trading engine (API, workers, local services).\n\n"
    "Configured from the environment and a .env file (or STRATEGIES_ENV_FILE): DATABASE_URL "
    "and KAFKA_BOOTSTRAP_SERVERS (unset: embedded PostgreSQL and in-process bus), "
    "STRATEGIES_MASTER_KEY (required with DATABASE_URL), STRATEGIES_DATA_DIR, "
    "STRATEGIES_LOG_LEVEL, STRATEGIES_LOG_FORMAT (auto, json, console), STRATEGIES_HTTP_HOST, "
    "STRATEGIES_HTTP_PORT; README, 'Configuration', lists them all.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(cli_db.app, name="db")
app.add_typer(kafka_app, name="kafka")
app.add_typer(platform_app, name="platform")
app.add_typer(cli_admin.float_app, name="float")
app.add_typer(cli_admin.participants_app, name="participants")
app.add_typer(cli_admin.instruments_app, name="instruments")
app.add_typer(cli_admin.projections_app, name="projections")
app.add_typer(audit_app, name="audit")
app.add_typer(cli_webhooks.app, name="webhooks")
app.add_typer(cli_master_key.app, name="master-key")
app.add_typer(cli_env.app, name="env")
app.command("worker")(cli_worker.worker)
app.command("demo")(cli_demo.demo)
app.command("bench")(cli_bench.bench)


def _version() -> str:
    try:
        return version("portfolio-strategies")
    except PackageNotFoundError:
        return "0+unknown"


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(f"strategies {_version()}")
        raise typer.Exit


@app.callback()
def root(
    ctx: typer.Context,
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Read the settings once and configure logging before any sub-command runs."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    configure_logging(_quiet_unless_serving(settings, ctx.invoked_subcommand))
    ctx.obj = settings


#: Commands that run until stopped: their INFO lines are the operator's record of the
#: process. Every other command answers and exits; its output is the answer, and progress
#: lines would only bury it (demo and bench set their own level).
LONG_RUNNING = frozenset({"serve", "worker"})


def _quiet_unless_serving(settings: Settings, command: str | None) -> Settings:
    """One-shot commands log at WARNING unless STRATEGIES_LOG_LEVEL asks otherwise; logs go
    to stderr either way, so stdout carries only the command's output."""
    if command in LONG_RUNNING or "log_level" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"log_level": "WARNING"})


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default: STRATEGIES_HTTP_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port (default: STRATEGIES_HTTP_PORT).", min=0)
    ] = None,
) -> None:
    """Run the HTTP API.

    With DATABASE_URL unset it starts (or reuses) the embedded PostgreSQL server.

    A server it started is stopped on exit, including SIGTERM and Ctrl-C.
    """
    # the web stack loads only for the command that needs it
    from infra.bootstrap.http import create_app

    settings: Settings = ctx.obj
    cli_master_key.require_secret_box(settings)  # before a database server is started
    with stop_on_signals(), ready_database(settings) as url:
        # Without Kafka the pipeline's bus is in-process, so the API process runs every role.
        roles = () if settings.kafka.bootstrap_servers else ("all",)
        config = server_config(
            create_app(settings, url, roles=roles),
            settings.http,
            host=host or settings.http.host,
            port=settings.http.port if port is None else port,
        )
        with tracing(settings, "strategies-serve"):
            uvicorn.Server(config).run()


def main() -> None:
    tune_collector()
    try:
        app()
    except MasterKeyError as exc:  # a command that found out late: still one line, exit 2
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()


@app.command()
def asyncapi(ctx: typer.Context) -> None:
    """Print the AsyncAPI 3 document of every topic (named with STRATEGIES_TOPIC_PREFIX):
    the commands, their results and dead letters, the events and the stage topics, with the
    payload schemas the code reads and writes them with."""
    settings: Settings = ctx.obj
    document = asyncapi_document(settings.topic_prefix, _version())
    typer.echo(json.dumps(document, indent=2))
