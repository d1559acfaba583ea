"""`strategies projections poisoned`: the events the read models could not apply, and
applying them again once their cause is fixed (`projections.poisoned`, `projections.retry`).

A retry of the live read models goes through the same writer as the `projections` role,
webhook recording included (recording needs no master key; the sender picks the rows up).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, NoReturn

import asyncpg
import typer

from infra.cli.admin import projections_app
from infra.cli.database import database_problem, ready_database
from infra.cli.tables import JsonOption, echo_json, echo_table
from infra.devservices.embedded_postgres import EmbeddedPostgresError
from infra.postgres.webhooks_store import WebhookStore
from infra.settings import Settings
from projections import poisoned
from projections.retry import retry_poisoned
from projections.schema import DEFAULT_SCHEMA, quoted
from projections.writer import DEFAULT_NAME, ProjectionWriter
from workers.webhooks import WebhookRecorder

Rows = list[dict[str, object]]
Action = Callable[[asyncpg.Pool], Awaitable[Rows]]
POISONED_COLUMNS = (
    ("id", "ID"),
    ("status", "STATUS"),
    ("attempts", "ATTEMPTS"),
    ("position", "POSITION"),
    ("event_type", "EVENT"),
    ("aggregate_id", "AGGREGATE"),
    ("partition", "PARTITION"),
    ("offset", "OFFSET"),
    ("last_seen", "LAST SEEN"),
    ("error_class", "ERROR CLASS"),
    ("error_message", "ERROR"),
)


@projections_app.command("poisoned")
def poisoned_events(
    ctx: typer.Context,
    retry: Annotated[
        list[int] | None,
        typer.Option(
            metavar="ID",
            help="Apply this poisoned event again, with its parked stream (repeatable).",
        ),
    ] = None,
    retry_all: Annotated[
        bool, typer.Option("--retry-all", help="Apply every unresolved event again.")
    ] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List resolved events too.")] = False,
    schema: Annotated[
        str, typer.Option(help="The read models' schema (a rebuild's scratch copy, say).")
    ] = DEFAULT_SCHEMA,
    as_json: JsonOption = False,
) -> None:
    """List the events the read models could not apply (poisoned, or parked behind one of
    their stream), or apply them again once the cause is fixed: what applies is resolved;
    exit code 1 while a retried event stays unresolved."""
    if retry and retry_all:
        _fail("give --retry ID or --retry-all, not both", code=2)
    retrying = retry_all or bool(retry)
    ids = None if retry_all else retry
    rows = _run(ctx, schema, lambda pool: _listed(pool, schema, ids if retrying else None))
    if retrying:
        unknown = set(ids or ()) - {row["id"] for row in rows}
        if unknown:
            _fail(f"no poisoned event {', '.join(map(str, sorted(unknown)))} in {schema!r}")
        rows = _run(ctx, schema, lambda pool: _retried(pool, schema, ids))
    elif not show_all:
        rows = [row for row in rows if row["status"] != poisoned.RESOLVED]
    if as_json:
        echo_json(rows)
    elif rows:
        # PostgreSQL's messages carry a DETAIL line: one row per event, on one line.
        lines = [
            {**row, "error_message": " ".join(str(row["error_message"]).split())} for row in rows
        ]
        echo_table(lines, POISONED_COLUMNS, right=frozenset({"id", "attempts", "position"}))
    else:
        typer.echo(f"no poisoned events in the read models of schema {schema!r}")
    if retrying and any(row["status"] != poisoned.RESOLVED for row in rows):
        raise typer.Exit(code=1)


async def _listed(pool: asyncpg.Pool, schema: str, ids: list[int] | None) -> Rows:
    return [row.public() for row in await poisoned.list_poisoned(pool, schema, ids=ids)]


async def _retried(pool: asyncpg.Pool, schema: str, ids: list[int] | None) -> Rows:
    """Retry, then the rows retried (those asked for, or every one unresolved before)."""
    before = await poisoned.list_poisoned(pool, schema, unresolved_only=ids is None, ids=ids)
    for name in sorted({row.projection for row in before}):
        notifier = None
        if schema == DEFAULT_SCHEMA and name == DEFAULT_NAME:
            notifier = WebhookRecorder(WebhookStore(pool, None))
        writer = ProjectionWriter(pool, schema, name=name, notifier=notifier)
        await retry_poisoned(writer, ids)
    return await _listed(pool, schema, [row.id for row in before])


def _run(ctx: typer.Context, schema: str, action: Action) -> Rows:
    settings: Settings = ctx.find_root().obj
    try:
        quoted(schema)
        with ready_database(settings) as url:
            return asyncio.run(_with_pool(url, action))
    except ValueError as exc:
        _fail(str(exc), code=2)
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as exc:
        _fail(database_problem(exc))


async def _with_pool(url: str, action: Action) -> Rows:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2, timeout=10)
    try:
        return await action(pool)
    finally:
        await pool.close()


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


@projections_app.command("follow")
def follow(
    ctx: typer.Context,
    parent: Annotated[
        int | None,
        typer.Option(min=1, help="Stop when the process with this pid is no longer the parent."),
    ] = None,
) -> None:
    """Follow the event store's log into the read models (recording webhooks) until SIGTERM.

    Embedded mode starts this itself as a child of `serve`, `demo` or `bench` (unless
    STRATEGIES_EMBEDDED_PROJECTIONS=inline); with Kafka the `projections` role reads the
    events topic instead. Its position is kept with the rows, so a restart resumes exactly.
    """
    from infra.bootstrap.projector import follow as follow_log

    settings: Settings = ctx.find_root().obj
    try:
        with ready_database(settings) as url:
            asyncio.run(follow_log(settings, url, parent=parent))
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as exc:
        _fail(database_problem(exc))
