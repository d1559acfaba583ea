"""`strategies db ...`: the embedded PostgreSQL server, for developers and scripts.

`db start` leaves a detached server behind that `serve`, workers and tests reuse (and do not
stop); `db stop` stops whatever runs on the data folder.
"""

from __future__ import annotations

from typing import NoReturn

import typer

from infra.devservices.database import embedded_postgres
from infra.devservices.embedded_postgres import EmbeddedPostgresError
from infra.postgres.master_key import KeyFiles
from infra.settings import Settings

app = typer.Typer(
    help="The embedded PostgreSQL server in $STRATEGIES_DATA_DIR/postgres (used when "
    "DATABASE_URL is unset).",
    no_args_is_help=True,
)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


@app.command()
def start(ctx: typer.Context) -> None:
    """Start the server (or find the one running), leave it running, print its URL."""
    server = embedded_postgres(_settings(ctx), keep_running=True)
    try:
        url = server.start()
    except EmbeddedPostgresError as exc:
        _fail(exc)
    # URL alone on stdout so `$(strategies db start)` captures it; the hint is for people.
    typer.echo(url)
    typer.echo(_hint(_settings(ctx), url), err=True)


@app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the server (fast shutdown: open transactions roll back); data is kept."""
    server = embedded_postgres(_settings(ctx))
    try:
        stopped = server.shutdown()
    except EmbeddedPostgresError as exc:
        _fail(exc)
    typer.echo("stopped" if stopped else f"no server was running in {server.folder}")


@app.command()
def status(ctx: typer.Context) -> None:
    """Show whether the server runs; exit code 0 when it does, 1 when it does not."""
    server = embedded_postgres(_settings(ctx))
    current = server.status()
    if current is None:
        typer.echo(f"not running (data folder {server.folder})")
        raise typer.Exit(code=1)
    typer.echo(f"running: pid {current.pid}, port {current.port}, url {current.url}")
    typer.echo(f"data folder: {server.folder}, log: {server.log_file}")


@app.command()
def url(ctx: typer.Context) -> None:
    """Print the URL of the running server; exit code 1 when it is not running."""
    current = embedded_postgres(_settings(ctx)).status()
    if current is None:
        typer.echo("not running; start it with `strategies db start`", err=True)
        raise typer.Exit(code=1)
    typer.echo(current.url)


def _hint(settings: Settings, url: str) -> str:
    """What to export to use this server by URL. With DATABASE_URL set a process needs
    STRATEGIES_MASTER_KEY too, and the one that opens this data folder's secrets is the key
    embedded mode has used so far (`infra.postgres.master_key`)."""
    key_file = KeyFiles.of(settings.data_dir).current
    if settings.master_key is not None:
        key = "STRATEGIES_MASTER_KEY is set: keep it"
    elif key_file.exists():
        key = f"export STRATEGIES_MASTER_KEY=$(cat {key_file})"
    else:
        key = "export STRATEGIES_MASTER_KEY=$(strategies master-key generate)  # keep a copy"
    return f"export DATABASE_URL={url}\n{key}"


def _fail(exc: EmbeddedPostgresError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1)
