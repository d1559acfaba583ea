"""`strategies platform ...`: register the platforms that call the API, and their keys.

`create` and `rotate-key` print a secret and a passphrase exactly once: the registry keeps
the secret sealed and the passphrase hashed, so nobody, this command included, can show them
again. Nothing here logs them; `list` shows public api keys only.

The database is the one `serve` uses (DATABASE_URL, or the embedded server, started for the
command if it is not running). The master key comes from STRATEGIES_MASTER_KEY, or in
embedded mode from `$STRATEGIES_DATA_DIR/master.key`, which is created on first use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, NoReturn, TypeVar

import asyncpg
import typer

from domain.errors import DomainError
from infra.cli.database import database_problem, ready_database
from infra.cli.master_key import require_secret_box
from infra.cli.tables import JsonOption, echo_json, echo_table
from infra.devservices.embedded_postgres import EmbeddedPostgresError
from infra.postgres import platforms
from infra.postgres.secrets_box import SecretBox
from infra.settings import Settings

T = TypeVar("T")

ONCE_WARNING = (
    "WARNING: the secret and the passphrase are shown only this once and cannot be recovered. "
    "Store them now in a secret manager; if they are lost, issue new ones with "
    "`strategies platform rotate-key {platform_id}`."
)

app = typer.Typer(
    help="Platforms allowed to call the API and their signing keys (X-SCX-* headers).",
    no_args_is_help=True,
)

PlatformId = Annotated[str, typer.Argument(help="Platform code given by the admin, e.g. PLAT01.")]
CredentialsJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the credentials as one JSON object (platform_id, api_key, secret, "
        "passphrase), e.g. to store them straight into a secret manager.",
    ),
]
PLATFORM_COLUMNS = (
    ("platform_id", "PLATFORM"),
    ("status", "STATUS"),
    ("created_at", "CREATED"),
    ("api_keys", "API KEYS"),
    ("name", "NAME"),
)


@app.command()
def create(
    ctx: typer.Context,
    platform_id: PlatformId,
    name: Annotated[str, typer.Option("--name", help="Display name of the platform.")],
    as_json: CredentialsJson = False,
) -> None:
    """Register a platform and issue its first api key, secret and passphrase."""
    box = _box(ctx)
    credentials = _run(ctx, lambda pool: platforms.create_platform(pool, platform_id, name, box))
    _print_credentials(credentials, as_json=as_json)


@app.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    platform_id: PlatformId,
    keep_previous: Annotated[
        bool,
        typer.Option(help="Leave the current keys active (revoke them later with revoke-key)."),
    ] = False,
    as_json: CredentialsJson = False,
) -> None:
    """Issue a new key for a platform; the previous keys stop working unless kept."""
    box = _box(ctx)
    credentials = _run(
        ctx,
        lambda pool: platforms.rotate_key(pool, platform_id, box, keep_previous=keep_previous),
    )
    _print_credentials(credentials, as_json=as_json)


@app.command("revoke-key")
def revoke_key(
    ctx: typer.Context,
    api_key: Annotated[str, typer.Argument(help="The public api key to revoke.")],
) -> None:
    """Revoke one api key (the platform and its other keys stay as they are)."""
    if not _run(ctx, lambda pool: platforms.revoke_key(pool, api_key)):
        _fail("no active key has that value")
    typer.echo("revoked")


@app.command()
def disable(ctx: typer.Context, platform_id: PlatformId) -> None:
    """Refuse every request of the platform with 403 until it is enabled again."""
    _run(ctx, lambda pool: platforms.disable_platform(pool, platform_id))
    typer.echo(f"platform {platform_id} disabled (running servers notice within seconds)")


@app.command()
def enable(ctx: typer.Context, platform_id: PlatformId) -> None:
    """Accept the platform's requests again."""
    _run(ctx, lambda pool: platforms.enable_platform(pool, platform_id))
    typer.echo(f"platform {platform_id} enabled")


@app.command("list")
def list_platforms(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the platforms, their status and their active (public) api keys."""
    rows = [
        {
            "platform_id": row.platform_id,
            "name": row.name,
            "status": row.status,
            "created_at": row.created_at.isoformat(timespec="seconds"),
            "api_keys": list(row.api_keys),
        }
        for row in _run(ctx, platforms.list_platforms)
    ]
    if as_json:
        echo_json(rows)
    elif not rows:
        typer.echo("no platforms; add one with `strategies platform create ID --name NAME`")
    else:
        echo_table(rows, PLATFORM_COLUMNS)


def _print_credentials(credentials: platforms.Credentials, *, as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "platform_id": credentials.platform_id,
                "api_key": credentials.api_key,
                "secret": credentials.secret_b64,
                "passphrase": credentials.passphrase,
            }
        )
    else:
        typer.echo(f"platform:   {credentials.platform_id}")
        typer.echo(f"api key:    {credentials.api_key}")
        typer.echo(f"secret:     {credentials.secret_b64}")
        typer.echo(f"passphrase: {credentials.passphrase}")
    typer.echo(ONCE_WARNING.format(platform_id=credentials.platform_id), err=True)


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.find_root().obj
    return settings


def _box(ctx: typer.Context) -> SecretBox:
    return require_secret_box(_settings(ctx))


def _run(ctx: typer.Context, action: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    try:
        with ready_database(_settings(ctx)) as url:
            return asyncio.run(_with_pool(url, action))
    except DomainError as exc:
        _fail(exc.message)
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as exc:
        _fail(database_problem(exc))


async def _with_pool(url: str, action: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2, timeout=10)
    try:
        return await action(pool)
    finally:
        await pool.close()


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)
