"""The trader roster: which Traders each Strategy has, their status and auto_rebalance flag.

It answers "who is in scope" when a rebalance names nobody (every active auto-rebalance
Trader) or a liquidation says `all`. It is a projection of `strategies.events`: each row
remembers the version of the last event applied, so a redelivered or replayed event changes
nothing (upserts only move forward). A scope read here may be a moment behind the write side;
that is safe because the credit check re-validates every Trader it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from workers.messages import DomainEventMessage

SCHEMA = """
CREATE TABLE IF NOT EXISTS trader_roster (
    trader_id uuid PRIMARY KEY,
    strategy_id uuid NOT NULL,
    participant_code text NOT NULL,
    status text NOT NULL,
    auto_rebalance boolean NOT NULL,
    version integer NOT NULL
);
CREATE INDEX IF NOT EXISTS trader_roster_scope
    ON trader_roster (strategy_id, status, auto_rebalance);
"""


@dataclass(frozen=True)
class RosterChange:
    trader_id: UUID
    version: int
    strategy_id: UUID | None = None
    participant_code: str | None = None
    status: str | None = None
    auto_rebalance: bool | None = None


def roster_change(event: DomainEventMessage) -> RosterChange | None:
    """The row change one event makes, or None when it does not concern the roster."""
    data = event.data
    if event.type == "Trader.Opened":
        return RosterChange(
            event.aggregate_id,
            event.aggregate_version,
            UUID(data["strategy_id"]),
            data["participant_code"],
            "pending",
            data["auto_rebalance"],
        )
    if event.type == "Trader.Settled":
        return RosterChange(
            event.aggregate_id,
            event.aggregate_version,
            status=data["status"],
            auto_rebalance=data["auto_rebalance"],
        )
    if event.type == "Trader.AutoRebalanceChanged":
        return RosterChange(
            event.aggregate_id, event.aggregate_version, auto_rebalance=data["auto_rebalance"]
        )
    return None


class Roster:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure_schema(self) -> None:
        async with self.pool.acquire() as connection:
            await connection.execute(SCHEMA)

    async def apply(self, event: DomainEventMessage) -> None:
        change = roster_change(event)
        if change is None:
            return
        async with self.pool.acquire() as connection:
            if change.strategy_id is not None:
                await connection.execute(
                    """INSERT INTO trader_roster AS r
                           (trader_id, strategy_id, participant_code, status,
                            auto_rebalance, version)
                       VALUES ($1, $2, $3, $4, $5, $6)
                       ON CONFLICT (trader_id) DO UPDATE SET version = EXCLUDED.version
                       WHERE r.version < EXCLUDED.version""",
                    change.trader_id,
                    change.strategy_id,
                    change.participant_code,
                    change.status,
                    change.auto_rebalance,
                    change.version,
                )
                return
            await connection.execute(
                """UPDATE trader_roster
                   SET status = COALESCE($2, status),
                       auto_rebalance = COALESCE($3, auto_rebalance),
                       version = $4
                   WHERE trader_id = $1 AND version < $4""",
                change.trader_id,
                change.status,
                change.auto_rebalance,
                change.version,
            )

    async def traders(self, strategy_id: UUID, *, auto_rebalance_only: bool) -> list[str]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                """SELECT participant_code FROM trader_roster
                   WHERE strategy_id = $1 AND status = 'active'
                     AND (auto_rebalance OR NOT $2)
                   ORDER BY participant_code""",
                strategy_id,
                auto_rebalance_only,
            )
        return [row["participant_code"] for row in rows]
