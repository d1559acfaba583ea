"""Re-sealing every secret at rest under a new master key (`strategies master-key rotate`).

Every sealed column is listed here, with the associated data that binds its values to their
rows. All of them are re-sealed in one transaction, under locks that keep writers out
meanwhile, so the database is either wholly under the old keys or wholly under the new one;
a value that no key held opens stops the rotation before anything changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infra.postgres import platforms, webhooks_store
from infra.postgres.secrets_box import SecretBoxError

if TYPE_CHECKING:
    import asyncpg

    from infra.postgres.secrets_box import SecretBox


@dataclass(frozen=True)
class SealedColumn:
    table: str
    key: str
    aad: Callable[[Any], bytes]
    #: What the summary calls these values.
    label: str


SEALED_COLUMNS = (
    SealedColumn("platform_api_keys", "api_key", platforms.secret_aad, "platform api key secrets"),
    SealedColumn(
        "webhook_subscriptions", "id", webhooks_store.secret_aad, "webhook subscription secrets"
    ),
)


class RotationError(Exception):
    """Raised when a sealed value opens with none of the keys held: nothing was changed."""


async def reseal_all(pool: asyncpg.Pool, box: SecretBox) -> dict[str, int]:
    """Open every sealed value with any key `box` holds and seal it again under its current
    key (in today's format); returns how many values each column held.

    A table that does not exist yet holds nothing to re-seal.
    """
    counts: dict[str, int] = {}
    async with pool.acquire() as connection, connection.transaction():
        for column in SEALED_COLUMNS:
            if await connection.fetchval("SELECT to_regclass($1)", column.table) is None:
                counts[column.label] = 0
                continue
            # SHARE ROW EXCLUSIVE: readers go on, writers (a new key, a new subscription)
            # wait, and a value sealed meanwhile under the old key cannot slip past.
            await connection.execute(f"LOCK TABLE {column.table} IN SHARE ROW EXCLUSIVE MODE")
            rows = await connection.fetch(
                f"SELECT {column.key} AS row_key, secret_sealed FROM {column.table}"
            )
            for row in rows:
                aad = column.aad(row["row_key"])
                try:
                    secret = box.open(bytes(row["secret_sealed"]), aad=aad)
                except SecretBoxError as exc:
                    raise RotationError(
                        f"{column.table} row {row['row_key']}: {exc}; nothing was changed"
                    ) from None
                await connection.execute(
                    f"UPDATE {column.table} SET secret_sealed = $1 WHERE {column.key} = $2",
                    box.seal(secret, aad=aad),
                    row["row_key"],
                )
            counts[column.label] = len(rows)
    return counts
