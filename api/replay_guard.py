"""A signed mutation is good for the one X-REQUEST-ID it was sent with.

The signed text (spec §7.2) is timestamp + method + path + body: `X-REQUEST-ID` is not in it.
Within the 60 s a timestamp is accepted, someone who captured a signed POST could send it
again under a new request id, and the engine would see a new request: a second enrollment
of the same money. So the first use of a mutation's signature is recorded with its request
id; the same signature with the same request id is a client's retry and goes on (the
idempotency key answers it with the original resource), with another request id it is a 401
`replayed_signature`.

The price: two mutations identical in method, path, body and second cannot both be sent
under one timestamp; the second needs another (any within the window will do).
Reads are not guarded: a repeated GET changes nothing, and HTTP clients retry them.
A row is needed only while its signature's timestamp is acceptable (at most 120 s after
first use); rows older than `KEEP_S` are purged at most once a minute per process.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

#: Methods whose replay could change something. GET, HEAD and OPTIONS are not among them.
GUARDED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEEP_S = 180  # > 2 x the 60 s window, with room for clock steps
PURGE_EVERY_S = 60.0

_last_purge = 0.0


async def first_use(pool: asyncpg.Pool, api_key: str, signature: str, request_id: str) -> bool:
    """Record this signature's use; False if it was used before with another request id."""
    digest = hashlib.sha256(signature.strip().encode()).digest()
    request_id = request_id.strip().lower()
    async with pool.acquire() as connection:
        await _purge_now_and_then(connection)
        # ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to commit, so
        # of two simultaneous uses exactly one is first and the other reads its request id.
        inserted = await connection.fetchval(
            """INSERT INTO api_signatures_seen (api_key, digest, request_id)
               VALUES ($1, $2, $3) ON CONFLICT (api_key, digest) DO NOTHING RETURNING true""",
            api_key,
            digest,
            request_id,
        )
        if inserted:
            return True
        first = await connection.fetchval(
            "SELECT request_id FROM api_signatures_seen WHERE api_key = $1 AND digest = $2",
            api_key,
            digest,
        )
    return first is None or first == request_id


async def _purge_now_and_then(connection: asyncpg.pool.PoolConnectionProxy) -> None:
    global _last_purge
    now = time.monotonic()
    if now - _last_purge < PURGE_EVERY_S:
        return
    _last_purge = now
    await connection.execute(
        "DELETE FROM api_signatures_seen WHERE seen_at < now() - make_interval(secs => $1)",
        float(KEEP_S),
    )
