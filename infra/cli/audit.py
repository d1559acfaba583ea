"""`strategies audit`: check the read models and the domain's invariants against the event
history, and report what happened to whom (extension). Exit codes: 0 clean, 1 findings,
2 bad input."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated
from uuid import UUID

import asyncpg
import typer

from domain.audit import describe, verify
from infra.cli.admin import with_pool_and_trading, with_trading
from infra.eventstore.store import PostgresTrading
from infra.tools.audit_report import (
    operation_report,
    replay_differences,
    report_csv,
    report_json,
    trader_at,
    trader_state,
)

app = typer.Typer(
    help="Audit the read models and the ledger from the event history.", no_args_is_help=True
)


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


@app.command("replay")
def replay(
    ctx: typer.Context,
    schema: Annotated[
        str, typer.Option(help="Scratch schema to rebuild into (its tables are replaced).")
    ] = "scratch",
    live: Annotated[str, typer.Option(help="The live read-model schema.")] = "public",
) -> None:
    """Rebuild every read model into a scratch schema and compare it with the live one."""

    async def run(pool: asyncpg.Pool, trading: PostgresTrading) -> list[str]:
        found = await replay_differences(pool, trading, live=live, scratch=schema)
        return [str(d) for d in found]

    differences = with_pool_and_trading(ctx, run)
    for line in differences:
        typer.echo(line)
    if differences:
        typer.echo(f"{len(differences)} difference(s) between {live!r} and the replay", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"read models in {live!r} match the replay")


@app.command("verify")
def verify_invariants(
    ctx: typer.Context,
    operation: Annotated[
        UUID | None, typer.Option(help="Only this Operation (default: every terminal one).")
    ] = None,
) -> None:
    """Check value conservation, uniform prices, untouched rejections and released holds."""
    checked, violations = with_trading(ctx, lambda t: verify(t, operation))
    for violation in violations:
        typer.echo(describe(violation))
    if violations:
        typer.echo(f"{len(violations)} violation(s) in {checked} operation(s)", err=True)
        raise typer.Exit(code=1)
    typer.echo(f"{checked} operation(s) verified: no violation")


@app.command("operation")
def operation_fairness(
    ctx: typer.Context,
    operation_id: Annotated[UUID, typer.Argument(help="The Operation to report on.")],
    format: Annotated[ReportFormat, typer.Option(help="json or csv.")] = ReportFormat.JSON,
) -> None:
    """Fairness report: locked prices, blocks and fills, and every Trader's instructions."""
    report = with_trading(ctx, lambda t: operation_report(t, operation_id))
    if report is None:
        typer.echo(f"error: operation {operation_id} does not exist", err=True)
        raise typer.Exit(code=2)
    typer.echo(report_csv(report) if format is ReportFormat.CSV else report_json(report), nl=False)
    if format is ReportFormat.JSON:
        typer.echo()


@app.command("trader")
def trader_as_of(
    ctx: typer.Context,
    trader_id: Annotated[UUID, typer.Argument(help="The Trader.")],
    at: Annotated[str, typer.Option(help="RFC 3339 time, e.g. 2026-01-31T12:00:00Z.")],
) -> None:
    """A Trader's positions, cash, status and hold as of a moment, from its own events."""
    moment = _rfc3339(at)
    trader = with_trading(ctx, lambda t: trader_at(t, trader_id, moment))
    if trader is None:
        typer.echo(f"error: trader {trader_id} did not exist at {at}", err=True)
        raise typer.Exit(code=2)
    typer.echo(report_json(trader_state(trader, moment)))


def _rfc3339(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        typer.echo(f"error: --at {raw!r} is not an RFC 3339 time with an offset", err=True)
        raise typer.Exit(code=2)
    return moment
