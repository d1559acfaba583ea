"""`X-REQUEST-ID` (spec §7.1, §11.17): a retried mutation gets the first answer back.

Operations and Strategies need no table of their own for this: their ids derive from
(platform, `X-REQUEST-ID`), so a replay finds the original aggregate (§11.4). A PATCH creates
nothing to find, so its first response is stored here, keyed by (platform, request id), with
a fingerprint of the request; the same id with another method, path or body is a 409
`idempotency_conflict`. Rows are kept indefinitely, like the resources the other keys made.

The pattern for a PATCH route:

    stored = await recall(pool, platform_id, request_id, fp)      # 409 on a mismatch
    if stored: return the stored response (status 200)
    ... apply the change (setting a flag is itself idempotent) ...
    status, body, _ = await remember(pool, platform_id, request_id, fp, 200, body)

`remember` settles a race between two first attempts: one row wins, the loser gets the
winner's response (or 409 if the two carried different bodies).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import orjson
from fastapi import Depends, Header, Response

from api.errors import ProblemError
from domain.errors import FieldError, IdempotencyConflictError
from infra.ddl import create_missing

if TYPE_CHECKING:
    import asyncpg

REQUEST_ID_HEADER = "X-REQUEST-ID"
# Canonical text form only: version nibble 4, RFC 4122 variant (8, 9, a or b).
_UUID_V4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_idempotency (
    platform_id text NOT NULL,
    request_id uuid NOT NULL,
    fingerprint text NOT NULL,
    status_code integer NOT NULL,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform_id, request_id)
);
"""


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any


async def ensure_schema(pool: asyncpg.Pool) -> None:
    await create_missing(pool, SCHEMA)


def fingerprint(method: str, path_with_query: str, body: bytes) -> str:
    """sha256 of the request as sent. The raw body bytes, not re-serialised JSON: a retry
    resends the same bytes (it is signed too), and parsing could merge two different amounts
    such as "0.10000000000000000001" and "0.1"."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path_with_query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def recall(
    pool: asyncpg.Pool, platform_id: str, request_id: UUID, fingerprint: str
) -> StoredResponse | None:
    """The stored response of an earlier request with this id, or None if there is none."""
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            """SELECT fingerprint, status_code, body::text AS body FROM api_idempotency
               WHERE platform_id = $1 AND request_id = $2""",
            platform_id,
            request_id,
        )
    if row is None:
        return None
    if row["fingerprint"] != fingerprint:
        raise _conflict(request_id)
    return StoredResponse(row["status_code"], orjson.loads(row["body"]))


async def remember(
    pool: asyncpg.Pool,
    platform_id: str,
    request_id: UUID,
    fingerprint: str,
    status_code: int,
    body: Any,
) -> tuple[int, Any, bool]:
    """Store this response unless one is stored already; return the response that stands.

    `replayed` is True when an earlier request (same id, same fingerprint) got there first:
    its status and body come back. `body` must be JSON-ready (`model_dump(mode="json")`).
    """
    async with pool.acquire() as connection:
        # ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to commit,
        # so the read below always sees the row that won.
        inserted = await connection.fetchval(
            """INSERT INTO api_idempotency
                   (platform_id, request_id, fingerprint, status_code, body)
               VALUES ($1, $2, $3, $4, $5::jsonb)
               ON CONFLICT (platform_id, request_id) DO NOTHING
               RETURNING true""",
            platform_id,
            request_id,
            fingerprint,
            status_code,
            orjson.dumps(body).decode(),
        )
    if inserted:
        return status_code, body, False
    stored = await recall(pool, platform_id, request_id, fingerprint)
    if stored is None:  # only if the row was deleted in between; nothing here deletes
        raise _conflict(request_id)
    return stored.status_code, stored.body, True


def parse_request_id(value: str | None) -> UUID:
    if value is None or not _UUID_V4.fullmatch(value.strip()):
        raise ProblemError(
            400,
            "invalid_request_id",
            f"{REQUEST_ID_HEADER} is required on every mutation and must be a UUID v4.",
            errors=[FieldError(REQUEST_ID_HEADER, "Must be a UUID v4")],
        )
    return UUID(value.strip())


async def request_id_header(
    response: Response,
    value: Annotated[
        str | None,
        Header(
            alias=REQUEST_ID_HEADER,
            description="UUID v4 chosen by the client; resend it only to retry the same call.",
        ),
    ] = None,
) -> UUID:
    """FastAPI dependency for mutations: the validated `X-REQUEST-ID`, echoed back."""
    request_id = parse_request_id(value)
    response.headers[REQUEST_ID_HEADER] = str(request_id)
    return request_id


RequestIdDep = Annotated[UUID, Depends(request_id_header)]


def _conflict(request_id: UUID) -> IdempotencyConflictError:
    return IdempotencyConflictError(
        f"{REQUEST_ID_HEADER} {request_id} was already used for a different request; "
        "reuse a request id only to retry the same call."
    )
