"""What the outbox relay publishes for one stored event: the event itself on
`strategies.events`, plus the stage tasks the event makes due.

Deriving the tasks from committed events (and nothing else) is what keeps Kafka and the
store from ever disagreeing: a handler only writes events; the relay turns the barrier
events into the next stage's work. Pure functions, so the rules are unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from infra.bus import Record
from infra.bus.messages import (
    CreditCheckRequested,
    DomainEventMessage,
    ExecutionRequested,
    PricingRequested,
)
from infra.bus.topic_names import DEFAULT, Topics

_ENVELOPE_KEYS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def plain(value: Any) -> Any:
    """JSON-ready form of an event attribute: Decimals and UUIDs as strings, times ISO."""
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def event_message(
    position: int, topic: str, aggregate_id: UUID, version: int, state: Mapping[str, Any]
) -> DomainEventMessage:
    """`topic` is eventsourcing's `module:Class.Event`, e.g. `domain.trader:Trader.Settled`."""
    qualname = topic.partition(":")[2]
    return DomainEventMessage(
        position=position,
        aggregate_id=aggregate_id,
        aggregate_type=qualname.partition(".")[0],
        aggregate_version=version,
        type=qualname,
        timestamp=state["timestamp"],
        data={k: plain(v) for k, v in state.items() if k not in _ENVELOPE_KEYS},
    )


def records_for(message: DomainEventMessage, topics: Topics = DEFAULT) -> list[Record]:
    """The event on `strategies.events`, followed by any stage task it makes due."""
    event = Record(topics.events, message.encode(), key=str(message.aggregate_id))
    return [event, *stage_tasks(message, topics)]


def stage_tasks(message: DomainEventMessage, topics: Topics = DEFAULT) -> list[Record]:
    data = message.data
    operation = str(message.aggregate_id)
    if message.type == "OperationChunk.Planned":
        task = CreditCheckRequested(operation_id=data["operation_id"], chunk=data["index"])
        return [_task(topics.credit_check, f"{task.operation_id}:{task.chunk}", task)]
    if message.type == "Operation.StatusChanged" and data["status"] == "pricing":
        return [_task(topics.pricing, operation, PricingRequested(operation_id=operation))]
    if message.type == "Operation.StatusChanged" and data["status"] == "settling":
        blocks = ExecutionRequested(operation_id=operation, action="place_blocks")
        return [_task(topics.blocks, operation, blocks)]
    if message.type == "Operation.FillsCompleted":
        return _per_chunk(topics, operation, "settle", data["chunk_count"])
    if message.type == "Operation.Failing":
        return _per_chunk(topics, operation, "release", data["chunk_count"])
    return []


def _per_chunk(
    topics: Topics, operation: str, action: Literal["settle", "release"], chunk_count: int
) -> list[Record]:
    return [
        _task(
            topics.execution,
            f"{operation}:{index}",
            ExecutionRequested(operation_id=operation, action=action, chunk=index),
        )
        for index in range(chunk_count)
    ]


def _task(
    topic: str, key: str, message: CreditCheckRequested | PricingRequested | ExecutionRequested
) -> Record:
    return Record(topic, message.encode(), key=key)
