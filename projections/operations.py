"""The operations read model, fed by the Operation stream alone (every `Operation.*` event).

`Requested` creates the row (`validating`), `StatusChanged` moves its status, the chunk
events add to its counts as the aggregate does, and `PricesLocked` records the prices.
Every other event of the stream (`Failing`, `BlockFilled`, ...) only moves `updated_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

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
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from infra.bus.messages import DomainEventMessage

VALIDATING = "validating"
NO_COUNTS = {"approved": 0, "rejected": 0, "skipped": 0, "settled": 0}

OPERATIONS = Table(
    "operations",
    (
        Column("id", "uuid"),
        Column("platform_id", "text"),
        Column("strategy_id", "uuid"),
        Column("request_id", "uuid"),
        Column("type", "text"),
        Column("status", "text"),
        Column("status_reason", "text"),
        Column("allocations", "jsonb"),
        Column("participant_count", "integer"),
        Column("counts", "jsonb"),
        Column("locked_prices", "jsonb"),
        *BOOKKEEPING,
        #: The request's recorded parameters (model and policy versions, origin...); null
        #: in rows made before they were kept.
        Column("parameters", "jsonb", nullable=True),
        #: The Strategy's quoted currency (from `Requested`): what its prices are quoted in
        #: (`projections.prices`); null for rows projected before it was kept.
        Column("quoted_currency", "text", nullable=True),
        #: Chunks planned, checked and settled (issue 20: chunks in flight per stage); null
        #: in rows projected before they were kept.
        Column("chunk_count", "integer", nullable=True),
        Column("chunks_checked", "integer", nullable=True),
        Column("chunks_settled", "integer", nullable=True),
    ),
    (*list_indexes("strategy_id", "type", "status"), ("by_request", "(platform_id, request_id)")),
)


@dataclass(frozen=True)
class OperationRow:
    TABLE: ClassVar[Table] = OPERATIONS
    id: UUID
    platform_id: str
    strategy_id: UUID
    request_id: UUID
    type: str
    status: str
    status_reason: str
    allocations: list[dict[str, str]]
    participant_count: int
    #: approved / rejected / skipped / settled Executions so far.
    counts: dict[str, int]
    #: Asset -> the locked quote (price, quote_id, quoted_at, ...).
    locked_prices: dict[str, dict[str, str]]
    created_at: datetime
    updated_at: datetime
    source_id: UUID
    version: int
    parameters: dict[str, str] | None = None
    quoted_currency: str | None = None
    chunk_count: int | None = None
    chunks_checked: int | None = None
    chunks_settled: int | None = None


def handles(aggregate_type: str, event_type: str) -> bool:
    """Whether events of this kind may read or change a row here (asked once per kind)."""
    del event_type
    return aggregate_type == "Operation"


def needs(event: DomainEventMessage, rows: Rows) -> list[Key]:
    del rows
    return [(OPERATIONS.name, event.aggregate_id)] if event.aggregate_type == "Operation" else []


def changes(event: DomainEventMessage, rows: Rows) -> list[OperationRow]:
    """The Operation row after `event`; nothing when the event is not new to the row."""
    if event.aggregate_type != "Operation":
        return []
    current: OperationRow | None = find(rows, OPERATIONS, event.aggregate_id)
    if not moves_forward(current, event.aggregate_id, event.aggregate_version):
        return []
    if event.type == "Operation.Requested":
        return [_requested(event)] if current is None else []
    if current is None:
        return []  # a later event without its Requested: nothing to change
    moved = evolve(current, updated_at=event.timestamp, version=event.aggregate_version)
    return [_changed(moved, event.type, event.data)]


def _requested(event: DomainEventMessage) -> OperationRow:
    data = event.data
    return OperationRow(
        id=event.aggregate_id,
        platform_id=data["platform_id"],
        strategy_id=UUID(data["strategy_id"]),
        request_id=UUID(data["request_id"]),
        type=data["type"],
        status=VALIDATING,
        status_reason="",
        allocations=data.get("allocations") or [],
        participant_count=int(data["participant_count"]),
        counts=dict(NO_COUNTS),
        locked_prices={},
        created_at=event.timestamp,
        updated_at=event.timestamp,
        source_id=event.aggregate_id,
        version=event.aggregate_version,
        parameters=dict(data.get("parameters") or {}),
        quoted_currency=data.get("quoted_currency"),
        chunk_count=data.get("chunk_count"),
        chunks_checked=0,
        chunks_settled=0,
    )


def _changed(row: OperationRow, kind: str, data: Mapping[str, Any]) -> OperationRow:
    if kind == "Operation.StatusChanged":
        return evolve(row, status=data["status"], status_reason=data["reason"])
    if kind == "Operation.PricesLocked":
        return evolve(row, locked_prices=dict(data["prices"]))
    if kind == "Operation.ChunkChecked":
        counted = _counted(
            row, approved=data["approved"], rejected=data["rejected"], skipped=data["skipped"]
        )
        return _chunk_through(counted, "chunks_checked")
    if kind == "Operation.ChunkSettled":
        # `rejected`: turned away at the locked price or by the float (absent before).
        counted = _counted(
            row,
            settled=data["settled"],
            skipped=data["skipped"],
            rejected=data.get("rejected", 0),
        )
        return _chunk_through(counted, "chunks_settled")
    if kind == "Operation.ChunkReleased":
        return _counted(row, rejected=data["released"])
    if kind == "Operation.ChunkCancelled":
        return _counted(row, cancelled=data["cancelled"])
    return row


def _counted(row: OperationRow, **added: int) -> OperationRow:
    counts = dict(row.counts)
    for name, number in added.items():
        counts[name] = counts.get(name, 0) + int(number)
    return evolve(row, counts=counts)


def _chunk_through(row: OperationRow, stage: str) -> OperationRow:
    """One more chunk through a stage; a row from before chunks were counted stays null."""
    done = getattr(row, stage)
    return row if done is None else evolve(row, **{stage: done + 1})
