"""Webhook subscriptions and their delivery log (spec §8, §11.20), in PostgreSQL via asyncpg.

A subscription's signing secret is shown once, at creation; it is stored sealed with the
deployment's `SecretBox` (the subscription id is the associated data, so a sealed secret
copied onto another row does not open). Removing a subscription deactivates it, so its
delivery log stays readable.

One delivery row per (subscription, event, payload type, object): its id is the
notification id, derived with uuid5, so a redelivered event inserts nothing new. Senders
claim due rows with `FOR UPDATE SKIP LOCKED` and push `next_attempt_at` forward by a lease
in the same statement: two dispatcher processes never send the same attempt at once, and a
sender that dies mid-attempt leaves the row due again once the lease runs out.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    import asyncpg

    from infra.postgres.secrets_box import SecretBox

PAYLOAD_TYPES = (
    "trade_strategy.operation.status_changed",
    "trade_strategy.execution.status_changed",
    "trade_strategy.trader.created",
    "trade_strategy.strategy.status_changed",
)
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
SECRET_PREFIX = "whsec_"

_SUBSCRIPTION = "id, platform_id, url, payload_types, legacy_headers, active, created_at"
_DELIVERY = (
    "id, subscription_id, payload_type, event_position, object_id, status, attempts, "
    "last_status_code, last_error, last_latency_ms, created_at, last_attempt_at, "
    "delivered_at, next_attempt_at"
)


@dataclass(frozen=True)
class Subscription:
    id: UUID
    platform_id: str
    url: str
    payload_types: tuple[str, ...]
    legacy_headers: bool
    active: bool
    created_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "platform_id": self.platform_id,
            "url": self.url,
            "payload_types": list(self.payload_types),
            "legacy_headers": self.legacy_headers,
            "active": self.active,
            "created_at": _rfc3339(self.created_at),
        }


@dataclass(frozen=True)
class NewDelivery:
    id: UUID
    subscription_id: UUID
    platform_id: str
    payload_type: str
    event_position: int
    object_id: UUID
    body: str


@dataclass(frozen=True)
class DueDelivery:
    """A claimed delivery: what one attempt needs."""

    id: UUID
    payload_type: str
    body: str
    attempts: int
    round_attempts: int


class WebhookStore:
    def __init__(self, pool: asyncpg.Pool, box: SecretBox | None) -> None:
        """`box` None: record and list only (no master key here); sealing and opening
        secrets, which creating a subscription and sending need, raise `LookupError`."""
        self.pool = pool
        self._box = box

    @property
    def box(self) -> SecretBox:
        if self._box is None:
            raise LookupError("webhook secrets need the master key (STRATEGIES_MASTER_KEY)")
        return self._box

    # -- subscriptions ----------------------------------------------------------------------
    async def create(
        self, platform_id: str, url: str, payload_types: Iterable[str], *, legacy: bool = False
    ) -> tuple[Subscription, str]:
        """A new subscription and its signing secret (in clear, this once)."""
        wanted = tuple(dict.fromkeys(payload_types))
        unknown = [t for t in wanted if t not in PAYLOAD_TYPES]
        if not wanted or unknown:
            raise ValueError(f"payload types must be among {', '.join(PAYLOAD_TYPES)}")
        subscription_id = uuid4()
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        sealed = self.box.seal(secret.encode(), aad=secret_aad(subscription_id))
        record = await self.pool.fetchrow(
            f"""INSERT INTO webhook_subscriptions
                    (id, platform_id, url, payload_types, secret_sealed, legacy_headers)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_SUBSCRIPTION}""",
            subscription_id,
            platform_id,
            url,
            list(wanted),
            sealed,
            legacy,
        )
        assert record is not None  # INSERT ... RETURNING always returns the row
        return _subscription(record), secret

    async def list_subscriptions(
        self, platform_id: str, *, active_only: bool = True
    ) -> list[Subscription]:
        records = await self.pool.fetch(
            f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions "
            "WHERE platform_id = $1 AND (active OR NOT $2) ORDER BY created_at, id",
            platform_id,
            active_only,
        )
        return [_subscription(r) for r in records]

    async def get_subscription(
        self, platform_id: str, subscription_id: UUID
    ) -> Subscription | None:
        record = await self.pool.fetchrow(
            f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions WHERE platform_id = $1 AND id = $2",
            platform_id,
            subscription_id,
        )
        return None if record is None else _subscription(record)

    async def deactivate(self, platform_id: str, subscription_id: UUID) -> bool:
        done = await self.pool.fetchval(
            "UPDATE webhook_subscriptions SET active = false "
            "WHERE platform_id = $1 AND id = $2 AND active RETURNING true",
            platform_id,
            subscription_id,
        )
        return bool(done)

    async def active(
        self, platform_ids: Sequence[str] | None = None, *, connection: Any = None
    ) -> list[Subscription]:
        """Active subscriptions (of these platforms), read on `connection` when given."""
        runner = connection or self.pool
        records = await runner.fetch(
            f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions "
            "WHERE active AND ($1::text[] IS NULL OR platform_id = ANY($1::text[])) "
            "ORDER BY created_at, id",
            None if platform_ids is None else list(platform_ids),
        )
        return [_subscription(r) for r in records]

    async def secret(self, subscription_id: UUID) -> str:
        sealed = await self.pool.fetchval(
            "SELECT secret_sealed FROM webhook_subscriptions WHERE id = $1", subscription_id
        )
        if sealed is None:
            raise LookupError(f"no webhook subscription {subscription_id}")
        return self.box.open(bytes(sealed), aad=secret_aad(subscription_id)).decode()

    # -- deliveries -------------------------------------------------------------------------
    async def record(self, connection: Any, deliveries: Sequence[NewDelivery]) -> None:
        """Insert on `connection` (the caller's transaction); a known notification id is kept."""
        if not deliveries:
            return
        await connection.executemany(
            """INSERT INTO webhook_deliveries (id, subscription_id, platform_id, payload_type,
                    event_position, object_id, body)
               VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING""",
            [
                (
                    d.id,
                    d.subscription_id,
                    d.platform_id,
                    d.payload_type,
                    d.event_position,
                    d.object_id,
                    d.body,
                )
                for d in deliveries
            ],
        )

    async def claim(self, subscription_id: UUID, limit: int, lease_s: float) -> list[DueDelivery]:
        records = await self.pool.fetch(
            """UPDATE webhook_deliveries d
               SET next_attempt_at = now() + make_interval(secs => $3)
               FROM (SELECT id FROM webhook_deliveries
                     WHERE subscription_id = $1 AND status = 'pending' AND next_attempt_at <= now()
                     ORDER BY next_attempt_at, event_position, id LIMIT $2
                     FOR UPDATE SKIP LOCKED) due
               WHERE d.id = due.id
               RETURNING d.id, d.payload_type, d.body, d.attempts, d.round_attempts,
                         d.event_position""",
            subscription_id,
            limit,
            lease_s,
        )
        ordered = sorted(records, key=lambda r: (r["event_position"], str(r["id"])))
        return [
            DueDelivery(r["id"], r["payload_type"], r["body"], r["attempts"], r["round_attempts"])
            for r in ordered
        ]

    async def delivered(self, delivery_id: UUID, status_code: int, latency_ms: int) -> None:
        await self.pool.execute(
            """UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,
                   round_attempts = round_attempts + 1, last_status_code = $2, last_error = '',
                   last_latency_ms = $3, last_attempt_at = now(), delivered_at = now()
               WHERE id = $1 AND status = 'pending'""",
            delivery_id,
            status_code,
            latency_ms,
        )

    async def failed(
        self,
        delivery_id: UUID,
        status_code: int | None,
        error: str,
        latency_ms: int,
        retry_in_s: float | None,
    ) -> None:
        """One failed attempt; `retry_in_s` None means the schedule is spent: dead letter."""
        await self.pool.execute(
            """UPDATE webhook_deliveries SET attempts = attempts + 1,
                   round_attempts = round_attempts + 1, last_status_code = $2,
                   last_error = $3, last_latency_ms = $4, last_attempt_at = now(),
                   status = CASE WHEN $5::float8 IS NULL THEN 'dead' ELSE 'pending' END,
                   next_attempt_at = now() + make_interval(secs => coalesce($5::float8, 0))
               WHERE id = $1 AND status = 'pending'""",
            delivery_id,
            status_code,
            error[:500],
            latency_ms,
            retry_in_s,
        )

    async def list_deliveries(
        self,
        platform_id: str,
        subscription_id: UUID,
        *,
        status: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> tuple[list[dict[str, Any]], int, int]:
        """The delivery log of one subscription, newest first: `(items, page, total_pages)`."""
        if page < 1 or not 1 <= size <= 200:
            raise ValueError("page must be 1 or more and size between 1 and 200")
        where = "platform_id = $1 AND subscription_id = $2 AND ($3::text IS NULL OR status = $3)"
        params = (platform_id, subscription_id, status)
        records = await self.pool.fetch(
            f"SELECT {_DELIVERY} FROM webhook_deliveries WHERE {where} "
            "ORDER BY created_at DESC, event_position DESC, id LIMIT $4 OFFSET $5",
            *params,
            size,
            (page - 1) * size,
        )
        total = await self.pool.fetchval(
            f"SELECT count(*) FROM webhook_deliveries WHERE {where}", *params
        )
        return [_delivery(r) for r in records], page, max(1, math.ceil(int(total) / size))

    async def get_delivery(
        self, platform_id: str, subscription_id: UUID, delivery_id: UUID
    ) -> dict[str, Any] | None:
        record = await self.pool.fetchrow(
            f"SELECT {_DELIVERY} FROM webhook_deliveries "
            "WHERE platform_id = $1 AND subscription_id = $2 AND id = $3",
            platform_id,
            subscription_id,
            delivery_id,
        )
        return None if record is None else _delivery(record)

    async def redeliver(
        self, platform_id: str, subscription_id: UUID, delivery_id: UUID
    ) -> dict[str, Any] | None:
        """Put a dead letter back on a fresh retry schedule; None when it is not a dead letter
        of this subscription (the caller tells "absent" from "not dead" with `get_delivery`)."""
        record = await self.pool.fetchrow(
            f"""UPDATE webhook_deliveries SET status = 'pending', round_attempts = 0,
                    next_attempt_at = now()
                WHERE platform_id = $1 AND subscription_id = $2 AND id = $3 AND status = 'dead'
                RETURNING {_DELIVERY}""",
            platform_id,
            subscription_id,
            delivery_id,
        )
        return None if record is None else _delivery(record)

    async def health(self) -> dict[str, int]:
        """Every platform's deliveries by status, plus `retrying` (pending after a failed
        attempt) and `retries` (attempts beyond each delivery's first), for the dashboard."""
        record = await self.pool.fetchrow(
            """SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                      count(*) FILTER (WHERE status = 'delivered') AS delivered,
                      count(*) FILTER (WHERE status = 'dead') AS dead,
                      count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
                      coalesce(sum(greatest(attempts - 1, 0)), 0) AS retries
               FROM webhook_deliveries"""
        )
        assert record is not None  # an aggregate without GROUP BY always answers one row
        return {name: int(value) for name, value in dict(record).items()}

    async def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """Every platform's latest dead letters, newest attempt first, with their target."""
        records = await self.pool.fetch(
            f"""SELECT {_DELIVERY}, platform_id,
                       (SELECT url FROM webhook_subscriptions AS s WHERE s.id = subscription_id)
                FROM webhook_deliveries WHERE status = 'dead'
                ORDER BY last_attempt_at DESC NULLS LAST, id LIMIT $1""",
            limit,
        )
        return [{**_delivery(r), "platform_id": r["platform_id"], "url": r["url"]} for r in records]


def secret_aad(subscription_id: UUID) -> bytes:
    """The associated data that binds a sealed secret to its subscription's row."""
    return b"webhook-subscription:" + subscription_id.bytes


def _rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _subscription(record: asyncpg.Record) -> Subscription:
    return Subscription(
        id=UUID(str(record["id"])),
        platform_id=record["platform_id"],
        url=record["url"],
        payload_types=tuple(record["payload_types"]),
        legacy_headers=record["legacy_headers"],
        active=record["active"],
        created_at=record["created_at"],
    )


def _delivery(record: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(record["id"]),
        "subscription_id": str(record["subscription_id"]),
        "payload_type": record["payload_type"],
        "event_position": record["event_position"],
        "object_id": str(record["object_id"]),
        "status": record["status"],
        "attempts": record["attempts"],
        "last_status_code": record["last_status_code"],
        "last_error": record["last_error"],
        "last_latency_ms": record["last_latency_ms"],
        "created_at": _rfc3339(record["created_at"]),
        "last_attempt_at": _rfc3339(record["last_attempt_at"]),
        "delivered_at": _rfc3339(record["delivered_at"]),
        "next_attempt_at": _rfc3339(record["next_attempt_at"])
        if record["status"] == PENDING
        else None,
    }
