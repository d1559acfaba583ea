"""Webhook subscriptions per platform and their delivery log (spec §8, §11.20), admin only.

The signing secret appears once, in the creation response; nothing can read it back later
(create a new subscription to rotate it). Only dead letters can be redelivered: a pending
delivery is already on its retry schedule and a delivered one reached the receiver.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.deps import PoolDep
from api.errors import Problem, ProblemError
from api.routes.admin import AdminRoute, require_admin
from api.routes.reads import MAX_PAGE
from domain.webhook_url import MAX_URL_LENGTH, webhook_target
from infra.postgres.platforms import require_platform
from infra.postgres.webhooks_store import WebhookStore

PayloadType = Literal[
    "trade_strategy.operation.status_changed",
    "trade_strategy.execution.status_changed",
    "trade_strategy.trader.created",
    "trade_strategy.strategy.status_changed",
]

router = APIRouter(
    prefix="/admin/platforms/{platform_id}/webhooks",
    route_class=AdminRoute,
    tags=["webhooks (extension)"],
    dependencies=[Depends(require_admin)],
    responses={
        400: {"model": Problem, "description": "Invalid body or page, or a refused URL."},
        401: {"model": Problem, "description": "Missing or wrong admin token."},
        403: {"model": Problem, "description": "Admin API switched off."},
    },
)
MISSING: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "Not found."}}
#: PostgreSQL text cannot hold a NUL: a fuzzed "%00" in the path failed in the query (500).
PlatformId = Annotated[str, Path(pattern=r"^[^\x00]+$")]


async def get_store(request: Request, pool: PoolDep) -> WebhookStore:
    return WebhookStore(pool, request.app.state.secret_box)


StoreDep = Annotated[WebhookStore, Depends(get_store)]


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        examples=["https://platform.example/hooks/strategies"],
        description="https to a public host: no credentials, no loopback, private, "
        "link-local or other non-public address (checked again, on every resolved "
        "address, before each delivery). STRATEGIES_WEBHOOK_ALLOW_PRIVATE=true allows "
        "http and private targets, for development.",
    )
    payload_types: Annotated[list[PayloadType], Field(min_length=1)]
    legacy_headers: StrictBool = Field(
        default=False, description="Also send the body-only x-zh-hook-signature-256."
    )


class Subscription(BaseModel):
    id: str
    platform_id: str
    url: str
    payload_types: list[str]
    legacy_headers: bool
    active: bool
    created_at: str


class CreatedSubscription(Subscription):
    secret: str = Field(description="The signing secret, shown only this once.")


class DeliveryLog(BaseModel):
    message: list[dict[str, Any]]
    page: int
    total_pages: int


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedSubscription,
    responses={404: {"model": Problem, "description": "No such platform."}},
    summary="Subscribe",
)
async def create_subscription(
    platform_id: PlatformId, body: SubscriptionCreate, store: StoreDep, request: Request
) -> dict[str, Any]:
    allow_private: bool = request.app.state.settings.webhook_allow_private
    target = webhook_target(body.url, allow_private=allow_private)
    await require_platform(store.pool, platform_id)
    sub, secret = await store.create(
        platform_id, target.url, body.payload_types, legacy=body.legacy_headers
    )
    return {**sub.public(), "secret": secret}


@router.get("", response_model=list[Subscription], summary="List active subscriptions")
async def list_subscriptions(platform_id: PlatformId, store: StoreDep) -> list[dict[str, Any]]:
    return [s.public() for s in await store.list_subscriptions(platform_id)]


@router.delete(
    "/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=MISSING,
    summary="Remove a subscription (its delivery log stays)",
)
async def delete_subscription(
    platform_id: PlatformId, subscription_id: UUID, store: StoreDep
) -> Response:
    if not await store.deactivate(platform_id, subscription_id):
        raise _missing("subscription", subscription_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryLog,
    responses=MISSING,
    summary="The delivery log, newest first",
)
async def list_deliveries(
    platform_id: PlatformId,
    subscription_id: UUID,
    store: StoreDep,
    delivery_status: Annotated[
        Literal["pending", "delivered", "dead"] | None, Query(alias="status")
    ] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,  # OFFSET is 64-bit: see reads
    size: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    if await store.get_subscription(platform_id, subscription_id) is None:
        raise _missing("subscription", subscription_id)
    items, page, total_pages = await store.list_deliveries(
        platform_id, subscription_id, status=delivery_status, page=page, size=size
    )
    return {"message": items, "page": page, "total_pages": total_pages}


@router.post(
    "/{subscription_id}/deliveries/{delivery_id}/redeliver",
    responses={**MISSING, 409: {"model": Problem, "description": "Not a dead letter."}},
    summary="Send a dead letter again (a fresh retry schedule, same notification id)",
)
async def redeliver(
    platform_id: PlatformId, subscription_id: UUID, delivery_id: UUID, store: StoreDep
) -> dict[str, Any]:
    again = await store.redeliver(platform_id, subscription_id, delivery_id)
    if again is not None:
        return again
    current = await store.get_delivery(platform_id, subscription_id, delivery_id)
    if current is None:
        raise _missing("delivery", delivery_id)
    raise ProblemError(
        409, "not_dead_letter", f"delivery {delivery_id} is {current['status']}, not dead"
    )


def _missing(kind: str, identifier: UUID) -> ProblemError:
    return ProblemError(404, f"{kind}_not_found", f"{kind} {identifier} does not exist")
