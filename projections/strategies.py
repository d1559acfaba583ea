"""The strategies read model, fed by the Strategy stream alone (`Strategy.Created` and each
`Strategy.ModelSet`, which replaces the current model)."""

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
        Column("model", "jsonb", nullable=True, added=True),
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


def handles(aggregate_type: str, event_type: str) -> bool:
    """Whether events of this kind may read or change a row here (the writer asks once per
    kind, not once per event)."""
    del aggregate_type
    return event_type in _EVENTS


_EVENTS = frozenset({"Strategy.Created", "Strategy.ModelSet"})


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
    if event.type == "Strategy.ModelSet":
        if current is None:
            return []
        model = {"version": data["version"], "allocations": data["allocations"]}
        return [
            evolve(
                current, model=model, updated_at=event.timestamp, version=event.aggregate_version
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
