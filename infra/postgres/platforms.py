"""The platform registry: who may call the API, and with which keys.

A platform (a short code such as `PLAT01`, given by the admin) holds one or more API keys.
Each key has three parts, zerohash-style: the public `api_key`, a 32-byte `secret` that signs
requests (HMAC-SHA256, see `api/auth.py`) and a `passphrase`. The secret and the passphrase
are shown once, when the key is issued, and never again:

- the secret is stored sealed under the master key (`infra/postgres/secrets_box.py`), because the
  server needs it in clear to check signatures; the api key is the associated data, so a
  sealed secret moved to another row does not open;
- the passphrase is stored only as a salted scrypt hash (`secrets_box.hash_passphrase`),
  since the server only compares it.

Lookups by api key are cached in memory for a few seconds (`KeyCache`): signature checks run
on every request. This process drops its entries at once when it rotates, revokes or
disables; another process (the CLI) is seen within `KEY_CACHE_TTL_S`.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from domain.codes import check_platform_id
from domain.errors import ConflictError, FieldError, InvalidRequestError, NotFoundError
from infra.postgres.secrets_box import hash_passphrase

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    from infra.postgres.secrets_box import SecretBox

PlatformStatus = Literal["active", "disabled"]

KEY_CACHE_TTL_S = 5.0
SECRET_BYTES = 32
PLATFORM_ID = re.compile(r"[A-Z0-9][A-Z0-9_-]{1,31}")
NAME_MAX_CHARS = 200


class PlatformIdInvalidError(InvalidRequestError):
    """Raised when a platform id or name is not acceptable."""

    code = "invalid_platform"


class PlatformExistsError(ConflictError):
    """Raised when a platform is created with an id that is already taken."""

    code = "platform_exists"


class PlatformNotFoundError(NotFoundError):
    """Raised when a platform id is not in the registry."""

    code = "platform_not_found"


@dataclass(frozen=True)
class Credentials:
    """What a client signs with; returned once, when a key is issued."""

    platform_id: str
    api_key: str
    secret_b64: str = field(repr=False)
    passphrase: str = field(repr=False)


@dataclass(frozen=True)
class KeyRecord:
    """An active api key as the signature check needs it (secret in clear: never log it)."""

    api_key: str
    platform_id: str
    status: PlatformStatus
    secret: bytes = field(repr=False)
    passphrase_hash: str = field(repr=False)


@dataclass(frozen=True)
class PlatformSummary:
    platform_id: str
    name: str
    status: PlatformStatus
    api_keys: tuple[str, ...]  # active keys only, public parts
    created_at: datetime


class KeyCache:
    """api key -> KeyRecord for a few seconds; only found, active keys are cached."""

    def __init__(
        self,
        ttl_s: float = KEY_CACHE_TTL_S,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, KeyRecord]] = {}

    def get(self, api_key: str) -> KeyRecord | None:
        entry = self._entries.get(api_key)
        if entry is None:
            return None
        expires, record = entry
        if self._clock() >= expires:
            del self._entries[api_key]
            return None
        return record

    def put(self, record: KeyRecord) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude but bounded; a refill costs one query per key
        self._entries[record.api_key] = (self._clock() + self.ttl_s, record)

    def forget_platform(self, platform_id: str) -> None:
        for api_key, (_, record) in list(self._entries.items()):
            if record.platform_id == platform_id:
                del self._entries[api_key]

    def forget_key(self, api_key: str) -> None:
        self._entries.pop(api_key, None)

    def clear(self) -> None:
        self._entries.clear()


key_cache = KeyCache()


async def create_platform(
    pool: asyncpg.Pool, platform_id: str, name: str, box: SecretBox
) -> Credentials:
    """Register an active platform with its first api key."""
    name = _check(platform_id, name)
    credentials, sealed, passphrase_hash = await _issue(platform_id, box)
    async with pool.acquire() as connection, connection.transaction():
        created = await connection.fetchval(
            """INSERT INTO platforms (platform_id, name, status) VALUES ($1, $2, 'active')
               ON CONFLICT (platform_id) DO NOTHING RETURNING true""",
            platform_id,
            name,
        )
        if not created:
            raise PlatformExistsError(f"platform {platform_id} already exists")
        await _insert_key(connection, credentials, sealed, passphrase_hash)
    return credentials


async def rotate_key(
    pool: asyncpg.Pool,
    platform_id: str,
    box: SecretBox,
    *,
    keep_previous: bool = False,
    cache: KeyCache = key_cache,
) -> Credentials:
    """Issue a new key; the previous ones are revoked unless `keep_previous` (for a switch
    without downtime, followed by `revoke_key` once the clients use the new key)."""
    credentials, sealed, passphrase_hash = await _issue(platform_id, box)
    async with pool.acquire() as connection, connection.transaction():
        await _lock_platform(connection, platform_id)
        if not keep_previous:
            await connection.execute(
                """UPDATE platform_api_keys SET status = 'revoked', revoked_at = now()
                   WHERE platform_id = $1 AND status = 'active'""",
                platform_id,
            )
        await _insert_key(connection, credentials, sealed, passphrase_hash)
    cache.forget_platform(platform_id)
    return credentials


async def revoke_key(pool: asyncpg.Pool, api_key: str, *, cache: KeyCache = key_cache) -> bool:
    """Revoke one key; False when no active key has that value."""
    async with pool.acquire() as connection:
        revoked = await connection.fetchval(
            """UPDATE platform_api_keys SET status = 'revoked', revoked_at = now()
               WHERE api_key = $1 AND status = 'active' RETURNING true""",
            api_key,
        )
    cache.forget_key(api_key)
    return bool(revoked)


async def disable_platform(
    pool: asyncpg.Pool, platform_id: str, *, cache: KeyCache = key_cache
) -> None:
    """Refuse every request of the platform (403) until it is enabled again; keys are kept."""
    await _set_status(pool, platform_id, "disabled")
    cache.forget_platform(platform_id)


async def enable_platform(
    pool: asyncpg.Pool, platform_id: str, *, cache: KeyCache = key_cache
) -> None:
    await _set_status(pool, platform_id, "active")
    cache.forget_platform(platform_id)


async def find_key(
    pool: asyncpg.Pool, api_key: str, box: SecretBox, *, cache: KeyCache = key_cache
) -> KeyRecord | None:
    """The active key with this value and its platform's status, or None."""
    cached = cache.get(api_key)
    if cached is not None:
        return cached
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            """SELECT k.api_key, k.platform_id, p.status, k.secret_sealed, k.passphrase_hash
               FROM platform_api_keys k JOIN platforms p USING (platform_id)
               WHERE k.api_key = $1 AND k.status = 'active'""",
            api_key,
        )
    if row is None:
        return None
    record = KeyRecord(
        api_key=row["api_key"],
        platform_id=row["platform_id"],
        status=row["status"],
        secret=box.open(row["secret_sealed"], aad=secret_aad(row["api_key"])),
        passphrase_hash=row["passphrase_hash"],
    )
    cache.put(record)
    return record


async def require_platform(pool: asyncpg.Pool, platform_id: str) -> None:
    """Refuse an admin change for a platform nobody registered: a typo in a deposit or a
    participant list must not create float or eligibility for a platform that cannot exist."""
    check_platform_id(platform_id)  # a NUL would fail in the query rather than be unknown
    async with pool.acquire() as connection:
        # A database where no platform was ever created has no table yet: none is known.
        found = await connection.fetchval("SELECT to_regclass('platforms') IS NOT NULL")
        if found:
            found = await connection.fetchval(
                "SELECT true FROM platforms WHERE platform_id = $1", platform_id
            )
    if not found:
        raise PlatformNotFoundError(
            f"platform {platform_id} does not exist: register it with "
            "`strategies platform create` first",
            errors=(FieldError("platform_id", "is not a registered platform"),),
        )


async def list_platforms(pool: asyncpg.Pool) -> list[PlatformSummary]:
    async with pool.acquire() as connection:
        rows = await connection.fetch(
            """SELECT p.platform_id, p.name, p.status, p.created_at,
                      COALESCE(array_agg(k.api_key ORDER BY k.created_at)
                               FILTER (WHERE k.status = 'active'), '{}') AS api_keys
               FROM platforms p LEFT JOIN platform_api_keys k USING (platform_id)
               GROUP BY p.platform_id ORDER BY p.platform_id"""
        )
    return [
        PlatformSummary(
            platform_id=row["platform_id"],
            name=row["name"],
            status=row["status"],
            api_keys=tuple(row["api_keys"]),
            created_at=row["created_at"],
        )
        for row in rows
    ]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def secret_aad(api_key: str) -> bytes:
    """The associated data that binds a sealed secret to its row (the key it signs for)."""
    return f"platform_api_keys:{api_key}".encode()


def _check(platform_id: str, name: str) -> str:
    problems = []
    if not PLATFORM_ID.fullmatch(platform_id):
        problems.append(
            FieldError("platform_id", "2 to 32 of A-Z, 0-9, '_' or '-', starting alphanumeric")
        )
    name = name.strip()
    if not name or len(name) > NAME_MAX_CHARS:
        problems.append(FieldError("name", f"1 to {NAME_MAX_CHARS} characters"))
    if problems:
        raise PlatformIdInvalidError("invalid platform", errors=tuple(problems))
    return name


async def _issue(platform_id: str, box: SecretBox) -> tuple[Credentials, bytes, str]:
    api_key = secrets.token_hex(16)
    secret = secrets.token_bytes(SECRET_BYTES)
    passphrase = secrets.token_urlsafe(18)
    passphrase_hash = await asyncio.to_thread(hash_passphrase, passphrase)
    credentials = Credentials(platform_id, api_key, _b64(secret), passphrase)
    return credentials, box.seal(secret, aad=secret_aad(api_key)), passphrase_hash


async def _insert_key(
    connection: PoolConnectionProxy, credentials: Credentials, sealed: bytes, passphrase_hash: str
) -> None:
    await connection.execute(
        """INSERT INTO platform_api_keys
               (api_key, platform_id, secret_sealed, passphrase_hash, status)
           VALUES ($1, $2, $3, $4, 'active')""",
        credentials.api_key,
        credentials.platform_id,
        sealed,
        passphrase_hash,
    )


async def _lock_platform(connection: PoolConnectionProxy, platform_id: str) -> None:
    found = await connection.fetchval(
        "SELECT true FROM platforms WHERE platform_id = $1 FOR UPDATE", platform_id
    )
    if not found:
        raise PlatformNotFoundError(f"platform {platform_id} does not exist")


async def _set_status(pool: asyncpg.Pool, platform_id: str, status: PlatformStatus) -> None:
    async with pool.acquire() as connection:
        updated = await connection.fetchval(
            """UPDATE platforms SET status = $2, updated_at = now()
               WHERE platform_id = $1 RETURNING true""",
            platform_id,
            status,
        )
    if not updated:
        raise PlatformNotFoundError(f"platform {platform_id} does not exist")
