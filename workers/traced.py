"""The span of each record a worker handles (`infra.tracing`): a stage task, or a command.

Its name is the stage (`credit-check`, `pricing`, `blocks`, `execution`) or `command`; its
attributes say which record it was, and for a stage task which Operation and chunk (from
the record key the relay gives it: `<operation id>` or `<operation id>:<chunk>`). Its parent
is the trace context in the record's headers, so the stage tasks of one Operation are spans
of the trace of the request that made it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.bus import Delivery, Handler
from infra.tracing import handling

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue


def about(delivery: Delivery) -> dict[str, AttributeValue]:
    """The record's place on the bus, in OpenTelemetry's messaging attributes."""
    attributes: dict[str, AttributeValue] = {
        "messaging.destination.name": delivery.topic,
        "messaging.destination.partition.id": str(delivery.partition),
        "messaging.kafka.offset": delivery.offset,
        "strategies.redelivered": delivery.redelivered,
    }
    if delivery.key is not None:
        attributes["messaging.kafka.message.key"] = delivery.key
    return attributes


def traced(stage: str, handler: Handler) -> Handler:
    """`handler` with each stage task in a span of its Operation's trace, and the
    Operation's correlation id on every line logged meanwhile."""

    async def handle(delivery: Delivery) -> None:
        attributes = about(delivery)
        operation, _, chunk = (delivery.key or "").partition(":")
        if operation:
            attributes["strategies.operation_id"] = operation
        if chunk.isdigit():
            attributes["strategies.chunk"] = int(chunk)
        with handling(delivery.headers, stage, attributes=attributes):
            await handler(delivery)

    return handle
