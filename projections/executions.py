"""The executions read model. Each row is fed by ONE stream, which Kafka delivers in order:

- an Execution of a Trader that passed the credit check belongs to the Trader's stream:
  `Trader.HoldPlaced` opens it `awaiting_execution` with its planned (pending) instructions,
  `Trader.Settled` fills them, `Trader.HoldReleased` ends it `rejected` or `skipped`. The
  Trader's own row (Opened comes first in that stream) gives platform, strategy and code;
- an Execution the credit check rejected or skipped belongs to the chunk's stream:
  `OperationChunk.Checked` lists it. Its Operation comes from the chunk's `Planned` event
  (kept in the small `operation_chunks` table), but platform and strategy live on the
  Operation, another stream that may be projected later: such rows are written without
  them (so no query shows them) and completed when `Operation.Requested` is applied.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from projections.operations import OPERATIONS
from projections.schema import (
    BOOKKEEPING,
    Column,
    Key,
    Rows,
    Table,
    evolve,
    find,
    list_indexes,
    moves_forward,
    uuid_of,
)
from projections.traders import PENDING, TRADERS, plain_text

if TYPE_CHECKING:
    from collections.abc import Mapping

    from infra.bus.messages import DomainEventMessage
    from projections.operations import OperationRow
    from projections.traders import TraderRow

AWAITING, SETTLED = "awaiting_execution", "settled"
TRADER_EVENTS = frozenset({"Trader.HoldPlaced", "Trader.Settled", "Trader.HoldReleased"})
#: What a chunk's `Checked` records as an Execution of its own: the check's exclusions, and
#: the participants of a chunk a cancellation caught before its check (issue 19).
CHECK_OUTCOMES = frozenset({"rejected", "skipped", "cancelled"})

OPERATION_CHUNKS = Table(
    "operation_chunks",
    (
        Column("id", "uuid"),
        Column("operation_id", "uuid"),
        # Only when the Planned event carries them; otherwise read from the Operation's row.
        Column("platform_id", "text", nullable=True),
        Column("strategy_id", "uuid", nullable=True),
        Column("source_id", "uuid"),
        Column("version", "integer"),
    ),
)

EXECUTIONS = Table(
    "executions",
    (
        Column("id", "uuid"),
        Column("platform_id", "text", nullable=True),
        Column("strategy_id", "uuid", nullable=True),
        Column("operation_id", "uuid"),
        Column("trader_id", "uuid", nullable=True),
        Column("participant_code", "text"),
        Column("account_label", "text"),
        Column("status", "text"),
        Column("status_reason", "text"),
        Column("status_reasons", "text[]"),
        Column("instructions", "jsonb"),
        *BOOKKEEPING,
    ),
    (
        *list_indexes("strategy_id", "operation_id", "trader_id", "participant_code", "status"),
        ("incomplete", "(operation_id) WHERE platform_id IS NULL"),
    ),
)


@dataclass(frozen=True)
class ChunkRow:
    TABLE: ClassVar[Table] = OPERATION_CHUNKS
    id: UUID
    operation_id: UUID
    platform_id: str | None
    strategy_id: UUID | None
    source_id: UUID
    version: int


@dataclass(frozen=True)
class ExecutionRow:
    TABLE: ClassVar[Table] = EXECUTIONS
    id: UUID
    #: None only until the Operation of a check-rejected Execution is projected.
    platform_id: str | None
    strategy_id: UUID | None
    operation_id: UUID
    #: None when rejected before the Trader existed (or while it never became visible). The
    #: queries show it only while the Trader is visible (`projections.queries`).
    trader_id: UUID | None
    participant_code: str
    account_label: str
    status: str
    status_reason: str
    status_reasons: list[str]
    instructions: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    source_id: UUID
    version: int


@dataclass(frozen=True)
class Backfill:
    """Complete the check-rejected Executions written before their Operation was projected."""

    operation_id: UUID
    platform_id: str
    strategy_id: UUID

    def args(self) -> tuple[UUID, str, UUID]:
        return self.operation_id, self.platform_id, self.strategy_id


def backfill_sql(schema: str) -> str:
    return (
        f"UPDATE {EXECUTIONS.qualified(schema)} SET platform_id = $2, strategy_id = $3::uuid,\n"
        "    account_label = CASE WHEN trader_id IS NULL THEN '' ELSE $3::uuid::text END\n"
        "WHERE operation_id = $1 AND platform_id IS NULL"
    )


def completed(row: object, backfill: Backfill) -> ExecutionRow | None:
    """`row` as `backfill` leaves it, or None when the backfill does not concern it."""
    if (
        not isinstance(row, ExecutionRow)
        or row.operation_id != backfill.operation_id
        or row.platform_id is not None
    ):
        return None
    return evolve(
        row,
        platform_id=backfill.platform_id,
        strategy_id=backfill.strategy_id,
        account_label=str(backfill.strategy_id) if row.trader_id else "",
    )


def backfills(event: DomainEventMessage) -> list[Backfill]:
    if event.type != "Operation.Requested":
        return []
    data = event.data
    return [Backfill(event.aggregate_id, data["platform_id"], uuid_of(data["strategy_id"]))]


# -- which rows an event reads ------------------------------------------------------------
_CHUNK_EVENTS = frozenset({"OperationChunk.Planned", "OperationChunk.Checked"})


def handles(aggregate_type: str, event_type: str) -> bool:
    """Whether events of this kind may read or change a row here (asked once per kind; the
    backfill of `Operation.Requested` is asked for apart, see `backfills`)."""
    del aggregate_type
    return event_type in TRADER_EVENTS or event_type in _CHUNK_EVENTS


#: Events whose `needs` read rows: asked again once those are known (a chunk's row names its
#: Operation). Every other event's needs come from the event alone, so they are asked once.
NEEDS_FROM_ROWS = frozenset({"OperationChunk.Checked"})


def needs(event: DomainEventMessage, rows: Rows) -> list[Key]:
    """The rows `event` reads (see `NEEDS_FROM_ROWS`)."""
    data = event.data
    if event.type in TRADER_EVENTS:
        keys = [(TRADERS.name, event.aggregate_id)]
        if data.get("execution_id"):
            keys.append((EXECUTIONS.name, uuid_of(data["execution_id"])))
        return keys
    if event.type == "OperationChunk.Planned":
        return [(OPERATION_CHUNKS.name, event.aggregate_id)]
    if event.type == "OperationChunk.Checked":
        keys = [(OPERATION_CHUNKS.name, event.aggregate_id)]
        keys += [(EXECUTIONS.name, uuid_of(d["execution_id"])) for d in _excluded(data)]
        # Not for the rows: the webhook names a Trader only if it is visible (as queries do).
        keys += [
            (TRADERS.name, uuid_of(d["trader_id"])) for d in _excluded(data) if d.get("trader_id")
        ]
        chunk: ChunkRow | None = find(rows, OPERATION_CHUNKS, event.aggregate_id)
        if chunk is not None and chunk.platform_id is None:
            keys.append((OPERATIONS.name, chunk.operation_id))
        return keys
    return []


# -- the row changes ----------------------------------------------------------------------
def changes(event: DomainEventMessage, rows: Rows) -> list[ChunkRow | ExecutionRow]:
    if event.type in TRADER_EVENTS:
        return _from_trader(event, rows)
    if event.type == "OperationChunk.Planned":
        return _planned(event, rows)
    if event.type == "OperationChunk.Checked":
        return list(_checked(event, rows))
    return []


def _from_trader(event: DomainEventMessage, rows: Rows) -> list[ChunkRow | ExecutionRow]:
    data = event.data
    if not data.get("execution_id"):
        return []
    execution_id = uuid_of(data["execution_id"])
    current: ExecutionRow | None = find(rows, EXECUTIONS, execution_id)
    trader: TraderRow | None = find(rows, TRADERS, event.aggregate_id)
    if trader is None or not moves_forward(current, event.aggregate_id, event.aggregate_version):
        return []
    if event.type == "Trader.HoldPlaced":
        return [_opened(event, execution_id, trader)]
    if current is None:
        return []  # closing an Execution this projection never saw open
    moved: dict[str, Any] = {"updated_at": event.timestamp, "version": event.aggregate_version}
    if event.type == "Trader.Settled":
        # Reversed, so that the first planned leg of an asset is the one kept.
        planned = {leg["underlying_currency"]: leg for leg in reversed(current.instructions)}
        filled = [_filled(execution_id, fill, planned) for fill in data["instructions"]]
        settled = {"status": SETTLED, "status_reason": "", "status_reasons": []}
        return [evolve(current, **moved, **settled, instructions=filled)]
    if trader.status == PENDING:  # its first enrollment failed: the Trader never existed
        moved.update(trader_id=None, account_label="")
    return [
        evolve(
            current,
            **moved,
            status=data["outcome"],
            status_reason=data["reason"],
            status_reasons=[data["reason"]] if data["reason"] else [],
            instructions=[dict(i, status="rejected") for i in current.instructions],
        )
    ]


def _opened(event: DomainEventMessage, execution_id: UUID, trader: TraderRow) -> ExecutionRow:
    data = event.data
    return ExecutionRow(
        id=execution_id,
        platform_id=trader.platform_id,
        strategy_id=trader.strategy_id,
        operation_id=uuid_of(data["operation_id"]),
        trader_id=trader.id,
        participant_code=trader.participant_code,
        account_label=str(trader.strategy_id),
        status=AWAITING,
        status_reason="",
        status_reasons=[],
        instructions=[_pending(leg) for leg in data.get("instructions", [])],
        created_at=event.timestamp,
        updated_at=event.timestamp,
        source_id=event.aggregate_id,
        version=event.aggregate_version,
    )


def _pending(leg: Mapping[str, str]) -> dict[str, Any]:
    return {
        "underlying_currency": leg["underlying_currency"],
        "side": leg["side"],
        "status": "pending",
        "requested_quantity": plain_text(leg["quantity"]),
        "requested_notional": plain_text(leg["notional"]),
        "price": None,
        "quantity": None,
        "total_notional": None,
        "trade_id": None,
    }


def _filled(
    execution_id: UUID, fill: Mapping[str, str], planned: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """A settled leg; what was requested comes from the planned leg of the same asset."""
    asset = fill["underlying_currency"]
    requested = planned.get(asset)
    if requested is None:
        requested = _pending(fill)
    return {
        "underlying_currency": asset,
        "side": fill["side"],
        "status": "filled",
        "requested_quantity": requested["requested_quantity"],
        "requested_notional": requested["requested_notional"],
        "price": plain_text(fill["price"]),
        "quantity": plain_text(fill["quantity"]),
        "total_notional": plain_text(fill["notional"]),
        "trade_id": trade_id(execution_id, asset),
    }


def trade_id(execution_id: UUID, asset: str) -> str:
    """`str(uuid5(execution_id, asset))` without the UUID object on the way (one per filled
    leg; the stdlib's constructor was most of the fold's cost for a settlement)."""
    digest = bytearray(hashlib.sha1(execution_id.bytes + asset.encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _planned(event: DomainEventMessage, rows: Rows) -> list[ChunkRow | ExecutionRow]:
    current: ChunkRow | None = find(rows, OPERATION_CHUNKS, event.aggregate_id)
    if current is not None:  # Planned is a chunk's first event: it never changes a row
        return []
    data = event.data
    strategy = data.get("strategy_id")
    return [
        ChunkRow(
            id=event.aggregate_id,
            operation_id=uuid_of(data["operation_id"]),
            platform_id=data.get("platform_id"),
            strategy_id=uuid_of(strategy) if strategy else None,
            source_id=event.aggregate_id,
            version=event.aggregate_version,
        )
    ]


def _checked(event: DomainEventMessage, rows: Rows) -> list[ExecutionRow]:
    """The Executions the credit check rejected or skipped (approved ones are the Traders')."""
    chunk: ChunkRow | None = find(rows, OPERATION_CHUNKS, event.aggregate_id)
    if chunk is None:
        return []
    platform_id, strategy_id = chunk.platform_id, chunk.strategy_id
    if platform_id is None:
        operation: OperationRow | None = find(rows, OPERATIONS, chunk.operation_id)
        if operation is not None:
            platform_id, strategy_id = operation.platform_id, operation.strategy_id
    found = []
    for decision in _excluded(event.data):
        execution_id = uuid_of(decision["execution_id"])
        current = find(rows, EXECUTIONS, execution_id)
        if not moves_forward(current, event.aggregate_id, event.aggregate_version):
            continue
        trader_id = uuid_of(decision["trader_id"]) if decision.get("trader_id") else None
        reasons = [r for r in decision.get("reasons", "").split(",") if r]
        found.append(
            ExecutionRow(
                id=execution_id,
                platform_id=platform_id,
                strategy_id=strategy_id,
                operation_id=chunk.operation_id,
                trader_id=trader_id,
                participant_code=decision["participant_code"],
                account_label=str(strategy_id) if trader_id and strategy_id else "",
                status=decision["outcome"],
                status_reason=reasons[0] if reasons else "",
                status_reasons=reasons,
                instructions=[],
                created_at=event.timestamp,
                updated_at=event.timestamp,
                source_id=event.aggregate_id,
                version=event.aggregate_version,
            )
        )
    return found


def _excluded(data: Mapping[str, Any]) -> list[Mapping[str, str]]:
    return [d for d in data.get("decisions", []) if d.get("outcome") in CHECK_OUTCOMES]
