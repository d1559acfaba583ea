"""Who a rebalance that names nobody (every active auto-rebalance Trader) or a liquidation of
`all` applies to: the active Traders of a Strategy, read from the `traders` read model.

The scope once had a projection of its own (a consumer group folding every event a second
time, one transaction per event); the traders read model already holds strategy, status and
the auto-rebalance flag, with the same forward-only versions. A scope read here may be a
moment behind the write side; that is safe because the credit check re-validates every
Trader it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections.schema import DEFAULT_SCHEMA, quoted

if TYPE_CHECKING:
    from uuid import UUID

    import asyncpg

ACTIVE = "active"


class Roster:
    def __init__(self, pool: asyncpg.Pool, schema: str = DEFAULT_SCHEMA) -> None:
        self.pool = pool
        self.schema = quoted(schema)

    async def traders(self, strategy_id: UUID, *, auto_rebalance_only: bool) -> list[str]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"""SELECT participant_code FROM {self.schema}.traders
                    WHERE strategy_id = $1 AND status = $2 AND (auto_rebalance OR NOT $3)
                    ORDER BY participant_code""",
                strategy_id,
                ACTIVE,
                auto_rebalance_only,
            )
        return [row["participant_code"] for row in rows]
