"""The strategies read model, fed by the Strategy stream alone: `Strategy.Created`, each
`Strategy.ModelSet` and `Strategy.PolicySet` (which replace the current model and policy),
`Strategy.PolicyRunRecorded` (the latest automatic run) and `Strategy.StatusChanged`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from projections.representations import policy_document, policy_run_document
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
    from infra.bus.messages import DomainEventMessage

STRATEGIES = Table(
    "strategies",
    (
        Column("id", "uuid"),
        Column("platform_id", "text"),
        Column("request_id", "uuid"),
        Column("quoted_currency", "text"),
        Column("metadata", "jsonb", document=True),
        *BOOKKEEPING,
        #: {"version": n, "allocations": [...]}: the current model, null without one.
        Column("model", "jsonb", nullable=True),
        #: The current policy version (`representations.policy_document`), null without one.
        Column("policy", "jsonb", nullable=True),
        #: The latest automatic run (`representations.policy_run_document`).
        Column("policy_run", "jsonb", nullable=True),
        #: `active` or `needs_adjustment`; null (read as active) for rows made before.
        Column("status", "text", nullable=True),
        Column("broken_assets", "jsonb", nullable=True),
    ),
    list_indexes(),
)


@dataclass(frozen=True)
class StrategyRow:
    TABLE: ClassVar[Table] = STRATEGIES
    id: UUID
    platform_id: str
    request_id: UUID
    quoted_currency: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    source_id: UUID
    version: int
    model: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    policy_run: dict[str, Any] | None = None
    status: str | None = None
    broken_assets: list[str] | None = None


def handles(aggregate_type: str, event_type: str) -> bool:
    """Whether events of this kind may read or change a row here (the writer asks once per
    kind, not once per event)."""
    del aggregate_type
    return event_type in _EVENTS


_EVENTS = frozenset(
    {
        "Strategy.Created",
        "Strategy.ModelSet",
        "Strategy.PolicySet",
        "Strategy.PolicyRunRecorded",
        "Strategy.StatusChanged",
    }
)


def needs(event: DomainEventMessage, rows: Rows) -> list[Key]:
    del rows
    if event.type in _EVENTS:
        return [(STRATEGIES.name, event.aggregate_id)]
    return []


def changes(event: DomainEventMessage, rows: Rows) -> list[StrategyRow]:
    """The Strategy row `event` creates or gives a new model; nothing for an event already
    applied (or a model whose Strategy this projection never saw created)."""
    if event.type not in _EVENTS:
        return []
    current: StrategyRow | None = find(rows, STRATEGIES, event.aggregate_id)
    if not moves_forward(current, event.aggregate_id, event.aggregate_version):
        return []
    data = event.data
    if event.type != "Strategy.Created":
        if current is None:
            return []
        return [
            evolve(
                current,
                **_changed(event.type, data, event.timestamp),
                updated_at=event.timestamp,
                version=event.aggregate_version,
            )
        ]
    return [
        StrategyRow(
            id=event.aggregate_id,
            platform_id=data["platform_id"],
            request_id=UUID(data["request_id"]),
            quoted_currency=data["quoted_currency"],
            metadata=data.get("metadata") or {},
            created_at=event.timestamp,
            updated_at=event.timestamp,
            source_id=event.aggregate_id,
            version=event.aggregate_version,
        )
    ]


def _changed(kind: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    if kind == "Strategy.ModelSet":
        return {"model": {"version": data["version"], "allocations": data["allocations"]}}
    if kind == "Strategy.PolicySet":
        return {"policy": policy_document(data["version"], data["policy"], at)}
    if kind == "Strategy.StatusChanged":
        return {"status": data["status"], "broken_assets": list(data["assets"])}
    run = {
        "period": data["period"],
        "policy_version": data["policy_version"],
        "operation_id": data["operation_id"],
        "evaluated": data["evaluated"],
        "outside": data["outside"],
        "cooling": data["cooling"],
        "at": at,
    }
    return {"policy_run": policy_run_document(run)}
