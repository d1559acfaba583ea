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
from infra.tracing import CORRELATION_HEADER, TRACEPARENT_HEADER

_ENVELOPE_KEYS = {"originator_id", "originator_version", "timestamp", "originator_topic"}
#: The header of an event record naming the transaction that wrote it: (transaction, the
#: event's `position`) grows in the order the relay publishes, the position alone does not.
#: A header, not a message field, so the wire model (and the public event feed) stay as
#: they were and a consumer of an older release still reads the records.
TRANSACTION_HEADER = "transaction"
#: xid8 counts 2**32 transactions per epoch from 0: 2**63 would take 2**31 epochs.
_MAX_TRANSACTION = 2**63 - 1


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
    position: int,
    topic: str,
    aggregate_id: UUID,
    version: int,
    state: Mapping[str, Any],
    *,
    already_plain: bool = False,
) -> DomainEventMessage:
    """`topic` is eventsourcing's `module:Class.Event`, e.g. `domain.trader:Trader.Settled`.
    `already_plain`: the state holds JSON values only (the typed stored form)."""
    qualname = topic.partition(":")[2]
    convert = _as_is if already_plain else plain
    return DomainEventMessage(
        position=position,
        aggregate_id=aggregate_id,
        aggregate_type=qualname.partition(".")[0],
        aggregate_version=version,
        type=qualname,
        timestamp=state["timestamp"],
        data={k: convert(v) for k, v in state.items() if k not in _ENVELOPE_KEYS},
    )


def _as_is(value: Any) -> Any:
    return value


def records_for(
    message: DomainEventMessage,
    topics: Topics = DEFAULT,
    *,
    transaction: int = 0,
    events: bool = True,
    trace: Mapping[str, str] | None = None,
) -> list[Record]:
    """The event on `strategies.events` (unless not `events`), followed by any stage task
    it makes due; `trace`: the headers of its Operation's trace (`infra.tracing`), on each."""
    tasks = stage_tasks(message, topics, trace)
    if not events:
        return tasks
    headers = {**(trace or {}), TRANSACTION_HEADER: str(transaction)}
    event = Record(topics.events, message.encode(), key=str(message.aggregate_id), headers=headers)
    return [event, *tasks]


#: The event that records an Operation's trace (`domain.request_trace`): its fields, and
#: the headers that carry them (`infra.tracing`).
TRACED_EVENT = "Operation.Requested"
_TRACE_FIELDS = {"correlation_id": CORRELATION_HEADER, "traceparent": TRACEPARENT_HEADER}


def operation_of(message: DomainEventMessage) -> str | None:
    """The Operation an event is part of: its own, or the one its data names (a chunk's
    plan, a Trader's hold and settlement), None for the others."""
    if message.aggregate_type == "Operation":
        return str(message.aggregate_id)
    named = message.data.get("operation_id")
    return str(named) if named else None


def recorded_trace(data: Mapping[str, Any]) -> dict[str, str]:
    """The trace headers an Operation's `Requested` event (its data) records: none in
    histories written before they were recorded."""
    return {header: str(data[name]) for name, header in _TRACE_FIELDS.items() if data.get(name)}


#: The only event types `stage_tasks` makes a task of.
TASK_EVENTS = frozenset(
    {
        "OperationChunk.Planned",
        "Operation.StatusChanged",
        "Operation.FillsCompleted",
        "Operation.Failing",
    }
)


def may_make_tasks(topic: str) -> bool:
    """Whether a stored event of eventsourcing's `topic` (`module:Class.Event`) can make a
    stage task due: a relay that publishes no events skips the others unread."""
    return topic.partition(":")[2] in TASK_EVENTS


def publish_order(headers: Mapping[str, str], message: DomainEventMessage) -> tuple[int, int]:
    """Where an event record stands in the relay's publish order. A record without the header
    was published by an older relay, in notification id order over rows that read as
    transaction 0. Raises ValueError when the header is not a transaction id."""
    raw = headers.get(TRANSACTION_HEADER, "0")
    # isdigit() alone also takes "²"; 19 ASCII digits are safe to convert, then bounded.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or int(raw) > _MAX_TRANSACTION:
        raise ValueError(f"the {TRANSACTION_HEADER} header is not a transaction id: {raw[:40]!r}")
    return int(raw), message.position


def stage_tasks(
    message: DomainEventMessage,
    topics: Topics = DEFAULT,
    trace: Mapping[str, str] | None = None,
) -> list[Record]:
    tasks = _stage_tasks(message, topics)
    if not trace:
        return tasks
    return [Record(task.topic, task.value, task.key, trace) for task in tasks]


def _stage_tasks(message: DomainEventMessage, topics: Topics) -> list[Record]:
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
