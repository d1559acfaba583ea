"""The AsyncAPI 3 document of every topic we publish or consume (issue 20): channels named
with the installation's topic prefix, and payload schemas taken from the same pydantic models
the code encodes and decodes the records with (`infra/bus/messages.py`), so the contract
cannot drift from the code. `strategies asyncapi` prints it; `serve` answers it at
`/asyncapi.json`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from infra.bus.messages import (
    Command,
    CommandResult,
    CreditCheckRequested,
    DeadLetter,
    DomainEventMessage,
    ExecutionRequested,
    PricingRequested,
)
from infra.bus.outbox import TRANSACTION_HEADER
from infra.bus.topic_names import PLATFORM_HEADER, Topics
from infra.logging import CORRELATION_ID_PATTERN
from infra.tracing import CORRELATION_HEADER, TRACEPARENT_HEADER

_REF = "#/components/schemas/{model}"
_TRACED = "traced"
#: The headers of every message but a dead letter (which keeps the original record's):
#: the Operation's trace (`infra.tracing`), optional, honoured on a command.
_TRACE_HEADERS = {
    "type": "object",
    "properties": {
        CORRELATION_HEADER: {
            "type": "string",
            "pattern": f"^{CORRELATION_ID_PATTERN}$",
            "description": "The correlation id on the log lines of every process that "
            "handles the record: the request's (X-Request-ID, a command's request id or "
            "its sender's `correlation_id`). Optional.",
        },
        TRACEPARENT_HEADER: {
            "type": "string",
            "description": "W3C trace context of the request's span: a consumer's span is "
            "its child, so one Operation is one trace. Optional.",
        },
    },
}
_KAFKA_BINDING = "0.5.0"


@dataclass(frozen=True)
class _Channel:
    """One topic: its message, what its record key is, its headers, and what the engine does
    with it (`receive`: consumes it; `send`: publishes it; both for the stage topics, which
    the relay publishes and the workers consume)."""

    name: str
    address: str
    model: type[BaseModel]
    description: str
    key: str
    actions: tuple[str, ...]
    headers: dict[str, str] | None = None
    #: Whether the message carries the trace headers (`_TRACE_HEADERS`).
    traced: bool = True


def asyncapi_document(prefix: str, version: str) -> dict[str, Any]:
    topics = Topics(prefix)
    channels = [
        _Channel(
            "commands",
            topics.commands,
            Command,
            "Commands from upstream services: one mutation per record (or a preview). The "
            "outcome is published on command-results under the same key.",
            "The request id, a UUID v4: the idempotency key (a replay answers `replayed`).",
            ("receive",),
            {PLATFORM_HEADER: "The platform sending the command."},
        ),
        _Channel(
            "commandResults",
            topics.command_results,
            CommandResult,
            "The outcome of each command record: accepted, replayed or rejected with the "
            "domain's error.",
            "The command's request id.",
            ("send",),
        ),
        _Channel(
            "commandsDeadLetter",
            topics.commands_dead_letter,
            DeadLetter,
            "Command records that could not be read, or whose handling failed on every "
            "attempt, with the reason and the original record.",
            "The original record's key.",
            ("send",),
            traced=False,
        ),
        _Channel(
            "events",
            topics.events,
            DomainEventMessage,
            "Every domain event in log order (Kafka mode), for the read models and webhooks.",
            "The aggregate id: one aggregate's events keep their order on one partition.",
            ("send", "receive"),
            {TRANSACTION_HEADER: "The writing transaction (log order with `position`)."},
        ),
        _Channel(
            "creditCheckRequested",
            topics.credit_check,
            CreditCheckRequested,
            "A chunk to credit-check, one per planned chunk.",
            "`<operation id>:<chunk>`.",
            ("send", "receive"),
        ),
        _Channel(
            "pricingRequested",
            topics.pricing,
            PricingRequested,
            "An Operation whose every chunk is checked: reserve the float, lock the prices.",
            "The Operation id.",
            ("send", "receive"),
        ),
        _Channel(
            "blocksRequested",
            topics.blocks,
            ExecutionRequested,
            "An Operation whose prices are locked: place its block orders.",
            "The Operation id.",
            ("send", "receive"),
        ),
        _Channel(
            "executionRequested",
            topics.execution,
            ExecutionRequested,
            "A chunk to settle (its blocks filled) or to release (its Operation failed or was "
            "cancelled).",
            "`<operation id>:<chunk>`.",
            ("send", "receive"),
        ),
    ]
    models = sorted({c.model for c in channels}, key=lambda m: m.__name__)
    _, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=_REF
    )
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Portfolio Strategies",
            "version": version,
            "description": "The Kafka topics of the engine. Payloads are JSON; decimals are "
            "strings; record keys and headers are described on each message.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The broker of KAFKA_BOOTSTRAP_SERVERS.",
                "variables": {"bootstrap": {"default": "localhost:9092"}},
            }
        },
        "channels": {},
        "operations": {},
        "components": {
            "schemas": definitions.get("$defs", {}),
            "messages": {},
            "messageTraits": {_TRACED: {"headers": _TRACE_HEADERS}},
        },
    }
    for channel in channels:
        message = channel.model.__name__
        document["components"]["messages"][message] = {
            "name": message,
            "title": message,
            "contentType": "application/json",
            "payload": {"$ref": _REF.format(model=message)},
        }
        document["channels"][channel.name] = {
            "address": channel.address,
            "description": channel.description,
            "messages": {message: _message(channel, message)},
        }
        for action in channel.actions:
            name = f"{action}{channel.name[0].upper()}{channel.name[1:]}"
            document["operations"][name] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel.name}"},
                "messages": [{"$ref": f"#/channels/{channel.name}/messages/{message}"}],
            }
    return document


def _message(channel: _Channel, message: str) -> dict[str, Any]:
    """The channel's message: the component's payload, with this topic's key and headers."""
    found: dict[str, Any] = {
        "name": message,
        "contentType": "application/json",
        "payload": {"$ref": _REF.format(model=message)},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": channel.key},
                "bindingVersion": _KAFKA_BINDING,
            }
        },
    }
    if channel.traced:
        found["traits"] = [{"$ref": f"#/components/messageTraits/{_TRACED}"}]
    if channel.headers:
        found["headers"] = {
            "type": "object",
            "properties": {
                name: {"type": "string", "description": text}
                for name, text in channel.headers.items()
            },
            "required": sorted(channel.headers),
        }
    return found
