"""The AsyncAPI document (`infra.bus.asyncapi`) as a readable page's rows (issue 20): per
channel its topic, what the engine does with it, and each message's key, headers and payload
fields with their types, read from the document itself so the page says what the JSON says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_ACTIONS = {"receive": "consumes", "send": "publishes"}


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool
    description: str


@dataclass(frozen=True)
class Message:
    name: str
    key: str
    headers: list[Field]
    schema_name: str
    description: str
    fields: list[Field]


@dataclass(frozen=True)
class Channel:
    name: str
    address: str
    description: str
    #: "consumes" / "publishes", with the operation's id
    operations: list[tuple[str, str]]
    messages: list[Message]


def channels(document: dict[str, Any]) -> list[Channel]:
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    found = []
    for name, channel in document.get("channels", {}).items():
        operations = [
            (_ACTIONS.get(op["action"], op["action"]), op_id)
            for op_id, op in document.get("operations", {}).items()
            if op.get("channel", {}).get("$ref") == f"#/channels/{name}"
        ]
        messages = [_message(m, schemas) for m in channel.get("messages", {}).values()]
        found.append(
            Channel(name, channel["address"], channel.get("description", ""), operations, messages)
        )
    return found


def _message(message: dict[str, Any], schemas: dict[str, Any]) -> Message:
    schema_name = _ref_name(message.get("payload", {}))
    schema = schemas.get(schema_name, {})
    headers = message.get("headers", {})
    key = message.get("bindings", {}).get("kafka", {}).get("key", {})
    return Message(
        name=message.get("name", schema_name),
        key=key.get("description", ""),
        headers=_fields(headers),
        schema_name=schema_name,
        description=schema.get("description", ""),
        fields=_fields(schema),
    )


def _fields(schema: dict[str, Any]) -> list[Field]:
    required = set(schema.get("required", []))
    return [
        Field(name, type_of(spec), name in required, spec.get("description", ""))
        for name, spec in schema.get("properties", {}).items()
    ]


def type_of(spec: dict[str, Any]) -> str:
    """A JSON schema's type in a few words: `string (uuid)`, `array of Chunk`, `a | b`."""
    if "$ref" in spec:
        return _ref_name(spec)
    if "enum" in spec:
        return "one of " + ", ".join(str(value) for value in spec["enum"])
    if "const" in spec:
        return f"always {spec['const']}"
    for union in ("anyOf", "oneOf"):
        if union in spec:
            return " | ".join(type_of(option) for option in spec[union])
    kind = spec.get("type", "any")
    if kind == "array":
        return "array of " + type_of(spec.get("items", {}))
    if kind == "object" and "additionalProperties" in spec:
        values = spec["additionalProperties"]
        return "object of " + type_of(values) if isinstance(values, dict) else "object"
    return f"{kind} ({spec['format']})" if "format" in spec else str(kind)


def _ref_name(spec: dict[str, Any]) -> str:
    return str(spec.get("$ref", "")).rsplit("/", 1)[-1]
