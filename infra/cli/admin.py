"""Administration from the command line (extension): the float, participant eligibility,
the instrument catalogue, and rebuilding the read models from the event history."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, TypeVar

import asyncpg
import typer

from domain.catalogue import Instrument, InstrumentStatus
from domain.eligibility import ParticipantStatus
from domain.errors import DomainError
from domain.money import parse_decimal
from infra.cli.database import ready_database
from infra.cli.tables import JsonOption, echo_json, echo_table
from infra.eventstore.store import PostgresTrading, retry_on_conflict
from infra.postgres.heartbeats import REBUILD, Heartbeat, LiveProcess
from infra.postgres.platforms import require_platform
from infra.settings import Settings
from projections.schema import DEFAULT_SCHEMA

T = TypeVar("T")

float_app = typer.Typer(help="A platform's float account (novated funding).", no_args_is_help=True)
participants_app = typer.Typer(help="Participant eligibility per platform.", no_args_is_help=True)
instruments_app = typer.Typer(help="The instrument catalogue.", no_args_is_help=True)
projections_app = typer.Typer(
    help="The read models behind the GET endpoints.", no_args_is_help=True
)
INSTRUMENT_COLUMNS = (
    ("symbol", "SYMBOL"),
    ("precision", "PRECISION"),
    ("min_notional", "MIN NOTIONAL"),
    ("status", "STATUS"),
)


def with_trading(ctx: typer.Context, action: Callable[[PostgresTrading], T]) -> T:
    """Run `action` on the event store of the configured (or embedded) database; a domain
    refusal becomes its message and exit code 2."""
    settings: Settings = ctx.obj
    with ready_database(settings) as url:
        trading = PostgresTrading(url)
        try:
            return action(trading)
        except DomainError as error:
            typer.echo(f"error ({error.code}): {error.message}", err=True)
            raise typer.Exit(code=2) from None
        finally:
            trading.close()


def with_pool_and_trading(
    ctx: typer.Context, action: Callable[[asyncpg.Pool, PostgresTrading], Awaitable[T]]
) -> T:
    """The same for commands that also read the read models (a pool) asynchronously; a bad
    argument they raise as ValueError (a schema name, say) becomes exit code 2."""
    settings: Settings = ctx.obj

    async def run(url: str) -> T:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        trading = await asyncio.to_thread(PostgresTrading, url)
        try:
            return await action(pool, trading)
        finally:
            trading.close()
            await pool.close()

    with ready_database(settings) as url:
        try:
            return asyncio.run(run(url))
        except DomainError as error:
            typer.echo(f"error ({error.code}): {error.message}", err=True)
            raise typer.Exit(code=2) from None
        except ValueError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=2) from None


def for_platform(ctx: typer.Context, platform_id: str, action: Callable[[PostgresTrading], T]) -> T:
    """`with_trading` for a change to one platform's state: a platform nobody registered is
    refused (`platform_not_found`, exit 2) before anything is written."""

    async def run(pool: asyncpg.Pool, trading: PostgresTrading) -> T:
        await require_platform(pool, platform_id)
        # As the API's calls: a concurrent writer's win is read back, so a deposit raced by
        # its own retry is a replay rather than an error.
        return await asyncio.to_thread(retry_on_conflict, lambda: action(trading))

    return with_pool_and_trading(ctx, run)


@float_app.command("deposit")
def deposit(
    ctx: typer.Context,
    platform_id: Annotated[str, typer.Argument(help="The platform, e.g. PLAT01.")],
    currency: Annotated[str, typer.Argument(help="Quoted currency, e.g. USD.")],
    amount: Annotated[str, typer.Argument(help="Decimal amount, e.g. 1000000.00.")],
    reference: Annotated[
        str,
        typer.Option(
            help="The wire's reference (at most 128 printable characters): the deposit's "
            "idempotency key, so running the same command again credits nothing."
        ),
    ],
) -> None:
    """Record a deposit into the platform's float (enrollments and top-ups draw on it)."""
    value = _decimal(amount, "amount")
    account, credited = for_platform(
        ctx, platform_id, lambda t: t.deposit_float(platform_id, currency, value, reference)
    )
    if not credited:
        typer.echo(f"deposit {reference} was already recorded: nothing credited")
    typer.echo(
        f"{platform_id} {currency} float: balance {account.balance}, available {account.available}"
    )


@participants_app.command("set")
def set_participants(
    ctx: typer.Context,
    platform_id: Annotated[str, typer.Argument(help="The platform, e.g. PLAT01.")],
    codes: Annotated[list[str], typer.Argument(help="Participant codes.")],
    status: Annotated[
        ParticipantStatus, typer.Option(help="Eligibility status.")
    ] = ParticipantStatus.ACTIVE,
    restrict: Annotated[
        list[str] | None, typer.Option(help="An asset they may not hold (repeatable).")
    ] = None,
) -> None:
    """Register participants (or change their eligibility); unknown participants are refused."""
    changed = for_platform(
        ctx,
        platform_id,
        lambda t: t.register_participants(platform_id, codes, status, list(restrict or [])),
    )
    typer.echo(f"{changed} participant(s) changed")


@instruments_app.command("list")
def list_instruments(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show every listed instrument (a fresh install lists the defaults)."""
    catalogue = with_trading(ctx, lambda t: t.ensure_default_catalogue())
    rows = [
        {"symbol": instrument.symbol, **instrument.as_dict()}
        for instrument in sorted(catalogue.instruments.values(), key=lambda i: i.symbol)
    ]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, INSTRUMENT_COLUMNS, right=frozenset({"precision", "min_notional"}))


@instruments_app.command("set")
def set_instrument(
    ctx: typer.Context,
    asset: Annotated[str, typer.Argument(help="Asset, e.g. BTC.")],
    currency: Annotated[str, typer.Argument(help="Quoted currency, e.g. USD.")],
    precision: Annotated[int, typer.Option(min=0, max=18, help="Quantity decimals.")] = 8,
    min_notional: Annotated[str, typer.Option(help="Smallest leg worth trading.")] = "1.00",
    status: Annotated[
        InstrumentStatus, typer.Option(help="enabled, halted or disabled.")
    ] = InstrumentStatus.ENABLED,
) -> None:
    """List an instrument or change it (halting one excludes every Trader who needs it)."""
    instrument = Instrument(
        asset, currency, precision, _decimal(min_notional, "min_notional"), status
    )
    with_trading(ctx, lambda t: t.list_instruments([instrument]))
    typer.echo(
        f"{instrument.symbol}: precision {precision}, min notional {min_notional}, {status.value}"
    )


@projections_app.command("rebuild")
def rebuild_projections(
    ctx: typer.Context,
    schema: Annotated[
        str,
        typer.Option(
            help="Schema to rebuild into. The default is the live read models: refused while "
            "any process runs the projections role. Any other name is a scratch copy, safe "
            "at any time (compare it with `strategies audit replay`).",
        ),
    ] = DEFAULT_SCHEMA,
) -> None:
    """Recreate the read models from the whole event history (identical rows by construction).

    A process projecting into the live read models while they are rebuilt would corrupt
    them, so rebuilding the live schema is refused while a `strategies worker` with the
    projections role (or all), or a `strategies serve` without Kafka, is alive (seen by its
    heartbeat within the last 15 s): stop them first. One that starts during the rebuild
    waits for it to finish.
    """
    from projections.rebuild import rebuild
    from projections.schema import quoted

    async def run(pool: asyncpg.Pool, trading: PostgresTrading) -> int:
        async with pool.acquire() as connection:
            # quoted(): the name comes from the command line; hand-written quotes would let
            # a '"' in it end the identifier and run the rest as SQL.
            await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)}")
        if schema != DEFAULT_SCHEMA:
            return await rebuild(pool, trading, schema)
        claim = Heartbeat(pool, [REBUILD])
        if blockers := await claim.start(unless="projections"):
            raise ValueError(_projecting(blockers))
        try:
            return await rebuild(pool, trading, schema)
        finally:
            await claim.stop()

    events = with_pool_and_trading(ctx, run)
    typer.echo(f"rebuilt the read models in schema {schema!r} from {events} events")


def _projecting(processes: list[LiveProcess]) -> str:
    who = ", ".join(f"pid {p.pid} on {p.host} (seen {p.seconds_ago:.0f} s ago)" for p in processes)
    return (
        f"the live read models are being projected by {who}: stop every process running the "
        "projections role (`strategies worker projections` or `all`, or `strategies serve` "
        "without Kafka) first, or rebuild into a scratch schema with --schema NAME"
    )


def _decimal(raw: str, field: str) -> Decimal:
    try:
        return parse_decimal(raw, field)
    except DomainError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(code=2) from None
