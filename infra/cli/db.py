"""`strategies db ...`: the schema's migrations, and the embedded PostgreSQL server.

`db migrate` brings the database (DATABASE_URL, or the embedded one) to this release's schema,
the only way our tables are made (`infra.postgres.migrations`). `db start` leaves a detached
server behind that `serve`, workers and tests reuse (and do not stop); `db stop` stops
whatever runs on the data folder.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, NoReturn

import asyncpg
import typer

from infra.bootstrap.schema import migrate_database
from infra.cli.database import database_problem
from infra.devservices.database import database_url, embedded_postgres
from infra.devservices.embedded_postgres import EmbeddedPostgresError
from infra.logging import redact_text
from infra.postgres.master_key import KeyFiles
from infra.postgres.migrations import latest, migrations, schema_version
from infra.settings import Settings

app = typer.Typer(
    help="The database schema's migrations, and the embedded PostgreSQL server in "
    "$STRATEGIES_DATA_DIR/postgres (used when DATABASE_URL is unset).",
    no_args_is_help=True,
)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


@app.command()
def migrate(
    ctx: typer.Context,
    status: Annotated[
        bool,
        typer.Option(
            "--status",
            help="Only show the schema's version and what is left to apply; exit code 1 "
            "when the database is behind this release.",
        ),
    ] = False,
) -> None:
    """Apply the schema migrations the database lacks (DATABASE_URL, or the embedded one),
    one line per migration applied; run it before starting a new release. Safe to run again
    (a no-op) and from several places at once (one waits for the other)."""
    try:
        with database_url(_settings(ctx)) as url:
            if status:
                current = asyncio.run(_version(url))
            else:
                applied = asyncio.run(migrate_database(url))
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as exc:
        typer.echo(f"error: {database_problem(exc)}", err=True)
        raise typer.Exit(code=1) from None
    if status:
        typer.echo(f"database schema is at {current}, this release needs {latest()}")
        for migration in migrations()[current:]:
            typer.echo(f"pending {migration.label}")
        if current < latest():
            raise typer.Exit(code=1)
        return
    for migration in applied:
        typer.echo(f"applied {migration.label}")
    typer.echo(f"database schema is at {latest()}" + ("" if applied else " (nothing to apply)"))


async def _version(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return await schema_version(connection)
    finally:
        await connection.close()


@app.command()
def start(ctx: typer.Context) -> None:
    """Start the server (or find the one running) at this release's schema, leave it
    running, print its URL."""
    server = embedded_postgres(_settings(ctx), keep_running=True)
    try:
        url = server.start()
        # This program owns the server, so it is brought to this release's schema here too:
        # the hint's `export DATABASE_URL=...` then names a database a process accepts.
        asyncio.run(migrate_database(url))
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as exc:
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


def _fail(exc: Exception) -> NoReturn:
    typer.echo(f"error: {redact_text(str(exc))}", err=True)
    raise typer.Exit(code=1)
