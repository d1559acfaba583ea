"""`strategies webhooks ...`: a platform's webhook subscriptions and their delivery log.

The signing secret is printed once, by `add`; it is stored sealed and never shown again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, NoReturn, TypeVar
from uuid import UUID

import asyncpg
import typer

from domain.errors import DomainError
from domain.webhook_url import webhook_target
from infra.cli.database import database_problem, ready_database
from infra.cli.master_key import require_secret_box
from infra.cli.tables import JsonOption, echo_json, echo_table
from infra.devservices.embedded_postgres import EmbeddedPostgresError
from infra.postgres.platforms import require_platform
from infra.postgres.secrets_box import SecretBox
from infra.postgres.webhooks_store import PAYLOAD_TYPES, Subscription, WebhookStore
from infra.settings import Settings

T = TypeVar("T")

app = typer.Typer(help="Webhook subscriptions per platform (spec §8).", no_args_is_help=True)

Platform = Annotated[str, typer.Argument(help="The platform, e.g. PLAT01.")]
SubscriptionId = Annotated[UUID, typer.Argument(help="The subscription id.")]
SUBSCRIPTION_COLUMNS = (
    ("id", "SUBSCRIPTION"),
    ("legacy_headers", "LEGACY"),
    ("payload_types", "TYPES"),
    ("url", "URL"),
)
DELIVERY_COLUMNS = (
    ("id", "NOTIFICATION"),
    ("created_at", "CREATED"),
    ("status", "STATUS"),
    ("payload_type", "TYPE"),
    ("attempts", "ATTEMPTS"),
    ("last_status_code", "LAST CODE"),
    ("last_error", "LAST ERROR"),
)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def _run(ctx: typer.Context, action: Callable[[WebhookStore], Awaitable[T]]) -> T:
    settings: Settings = ctx.find_root().obj
    box = require_secret_box(settings)
    try:
        with ready_database(settings) as url:
            return asyncio.run(_with_store(url, box, action))
    except DomainError as exc:
        _fail(f"({exc.code}) {exc.message}")
    except ValueError as exc:
        _fail(str(exc))
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as exc:
        _fail(database_problem(exc))


async def _with_store(
    url: str, box: SecretBox, action: Callable[[WebhookStore], Awaitable[T]]
) -> T:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2, timeout=10)
    try:
        return await action(WebhookStore(pool, box))
    finally:
        await pool.close()


@app.command("add")
def add(
    ctx: typer.Context,
    platform_id: Platform,
    url: Annotated[
        str,
        typer.Argument(
            help="The receiver's https URL on a public host "
            "(STRATEGIES_WEBHOOK_ALLOW_PRIVATE=true also allows http and private hosts)."
        ),
    ],
    types: Annotated[
        list[str] | None,
        typer.Option("--type", help=f"Payload type (repeatable; default all): {PAYLOAD_TYPES}."),
    ] = None,
    legacy: Annotated[
        bool, typer.Option("--legacy", help="Also send the body-only x-zh-hook-signature-256.")
    ] = False,
) -> None:
    """Subscribe URL to the platform's notifications; prints the signing secret once."""
    settings: Settings = ctx.find_root().obj
    try:
        webhook_target(url, allow_private=settings.webhook_allow_private)
    except DomainError as refused:
        _fail(f"({refused.code}) {refused.message}")

    async def subscribe(store: WebhookStore) -> tuple[Subscription, str]:
        await require_platform(store.pool, platform_id)
        return await store.create(platform_id, url, types or PAYLOAD_TYPES, legacy=legacy)

    sub, secret = _run(ctx, subscribe)
    typer.echo(f"subscription {sub.id} for {platform_id}: {url}")
    typer.echo(f"types: {', '.join(sub.payload_types)}; legacy headers: {sub.legacy_headers}")
    typer.echo(f"secret (shown once, keep it): {secret}")


@app.command("list")
def list_subscriptions(
    ctx: typer.Context, platform_id: Platform, as_json: JsonOption = False
) -> None:
    """The platform's active subscriptions."""
    subs = _run(ctx, lambda s: s.list_subscriptions(platform_id))
    rows = [
        {
            "id": str(sub.id),
            "url": sub.url,
            "payload_types": list(sub.payload_types),
            "legacy_headers": sub.legacy_headers,
        }
        for sub in subs
    ]
    if as_json:
        echo_json(rows)
    elif not rows:
        typer.echo(f"no webhook subscriptions for {platform_id}")
    else:
        echo_table(rows, SUBSCRIPTION_COLUMNS)


@app.command("remove")
def remove(ctx: typer.Context, platform_id: Platform, subscription_id: SubscriptionId) -> None:
    """Stop notifying a subscription (its delivery log stays)."""
    if not _run(ctx, lambda s: s.deactivate(platform_id, subscription_id)):
        _fail(f"no active subscription {subscription_id} for {platform_id}")
    typer.echo(f"removed {subscription_id}")


@app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    platform_id: Platform,
    subscription_id: SubscriptionId,
    status: Annotated[str | None, typer.Option(help="pending, delivered or dead.")] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    size: Annotated[int, typer.Option(min=1, max=200)] = 50,
    as_json: JsonOption = False,
) -> None:
    """The delivery log, newest first (--json: the same document as the HTTP API)."""
    items, page, pages = _run(
        ctx,
        lambda s: s.list_deliveries(
            platform_id, subscription_id, status=status, page=page, size=size
        ),
    )
    if as_json:
        echo_json({"message": items, "page": page, "total_pages": pages})
        return
    if items:
        echo_table(items, DELIVERY_COLUMNS, right=frozenset({"attempts", "last_status_code"}))
    typer.echo(f"page {page} of {pages}")


@app.command("redeliver")
def redeliver(
    ctx: typer.Context,
    platform_id: Platform,
    subscription_id: SubscriptionId,
    delivery_id: Annotated[UUID, typer.Argument(help="The dead letter's notification id.")],
) -> None:
    """Send a dead letter again, on a fresh retry schedule (same notification id)."""
    if _run(ctx, lambda s: s.redeliver(platform_id, subscription_id, delivery_id)) is None:
        _fail(f"{delivery_id} is not a dead letter of subscription {subscription_id}")
    typer.echo(f"{delivery_id} is pending again")
