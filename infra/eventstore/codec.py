"""The stored form of events: typed JSON through msgspec, decoded field by field in C.

eventsourcing's JSON transcoder tags every Decimal, UUID and datetime as
`{"_type_": ..., "_data_": ...}` and undoes the tags with a Python object hook called for
every JSON object it reads; with the mapper around it, that was the largest single cost of
loading an aggregate. Here an event's state is plain JSON (Decimals as strings, UUIDs and
times in their usual text form), written by msgspec's encoder, and read back by a decoder
built once per event class from that class's own field annotations (`Trader.Settled.funded:
Decimal`, `execution_id: UUID | None`, ...): the conversions happen per declared field, in C,
and nothing inspects values one by one.

The new form starts with the byte 0x01 (JSON never does), so stores written before it load
as they are: a state without the mark goes through eventsourcing's transcoder, and nothing
has to be rewritten. Snapshots keep eventsourcing's form: their state is an aggregate's
attributes, which no annotation describes, and with the aggregate cache they are read only
when a process first meets an aggregate.
"""

from __future__ import annotations

import functools
import math
import typing
from datetime import datetime
from decimal import Decimal
from types import NoneType, UnionType
from typing import Any, cast
from uuid import UUID

import msgspec
from eventsourcing.domain import CanSnapshotAggregate
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

MARK = b"\x01"
_CONVERTED = (Decimal, UUID, datetime)
_ENVELOPE = frozenset({"originator_id", "originator_version"})
_encode = msgspec.json.Encoder().encode


class TypedMapper(Mapper[UUID]):
    """eventsourcing's Mapper with the typed JSON form for events (see the module's doc).
    Ciphers and compressors are not configured here, so they are not supported."""

    def __init__(self, legacy: JSONTranscoder) -> None:
        super().__init__(transcoder=legacy)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        cls = type(domain_event)
        if issubclass(cls, CanSnapshotAggregate):
            return super().to_stored_event(domain_event)
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(cls, "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        if _holds_free_json(cast("Any", cls)):
            _refuse_non_finite(state, get_topic(cls))
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=get_topic(cls),
            state=MARK + _encode(state),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        if not is_typed(stored_event):
            return super().to_domain_event(stored_event)
        cls = resolve_topic(stored_event.topic)
        try:
            state: dict[str, Any] = decoder_for(cls).decode(stored_event.state[1:])
        except (msgspec.DecodeError, TypeError) as error:
            msg = (
                f"Failed to deserialise state of stored event with topic "
                f"'{stored_event.topic}', originator_id '{stored_event.originator_id}' and "
                f"originator_version {stored_event.originator_version}: {error}"
            )
            raise MapperDeserialisationError(msg) from error
        convert_id = find_id_convertor(cls, cast("Any", type(stored_event.originator_id)))
        state["originator_id"] = convert_id(stored_event.originator_id)
        state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

    def decode_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        """The state as plain JSON values (Decimals, UUIDs and times as text) for publishing:
        the typed form needs no conversion at all, the tagged one is converted as before."""
        if is_typed(stored_event):
            return cast("dict[str, Any]", msgspec.json.decode(stored_event.state[1:]))
        return cast("dict[str, Any]", self.transcoder.decode(stored_event.state))


def is_typed(stored_event: StoredEvent) -> bool:
    """Whether the row is in the typed form (else eventsourcing's tagged one)."""
    return stored_event.state[:1] == MARK


@functools.cache
def _holds_free_json(cls: type[Any]) -> bool:
    """Whether a field of `cls` is free JSON (typed Any somewhere), where a float may be."""
    return any("Any" in str(hint) for hint in _hints(cls).values())


def _refuse_non_finite(value: Any, topic: str) -> None:
    """msgspec writes NaN and infinities as null: refuse them rather than store another value
    (every way in refuses them before; this keeps the store from ever changing one)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{topic}: {value} cannot be stored as JSON")
    elif isinstance(value, dict):
        for item in value.values():
            _refuse_non_finite(item, topic)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _refuse_non_finite(item, topic)


@functools.cache
def decoder_for(cls: type[Any]) -> msgspec.json.Decoder[Any]:
    """A decoder of `cls`'s stored state: a dict with each annotated field converted to its
    type where the type is a Decimal, a UUID or a time (or holds them); everything else read
    as the JSON it is, exactly as the tagged form gave it back."""
    fields = {
        name: _decodable(hint)
        for name, hint in _hints(cls).items()
        if name not in _ENVELOPE and typing.get_origin(hint) is not typing.ClassVar
    }
    fields["class_version"] = int
    make_shape: Any = typing.TypedDict  # a TypedDict named at run time, one per event class
    shape = make_shape(f"{cls.__qualname__}State", fields, total=False)
    return msgspec.json.Decoder(shape)


def _hints(cls: type[Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError) as error:  # an annotation we cannot resolve: refuse early
        raise TypeError(f"cannot read the field types of {cls.__qualname__}: {error}") from error


def _decodable(hint: Any) -> Any:
    """`hint` with every leaf other than Decimal, UUID and datetime widened to Any, so the
    decoder converts only those (a str-valued enum stays the str it was stored as)."""
    if hint in _CONVERTED:
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, tuple, set, frozenset) and args:
        inner = [_decodable(a) for a in args if a is not Ellipsis]
        return list[inner[0]] if len(set(inner)) == 1 else Any  # type: ignore[valid-type]
    if origin is dict and len(args) == 2:
        value = _decodable(args[1])
        return dict[str, value] if value is not Any else dict[str, Any]  # type: ignore[valid-type]
    if origin in (typing.Union, UnionType):
        kept = [a for a in args if a is NoneType or _decodable(a) is not Any]
        if len(kept) == len(args) and len(kept) <= 2 and NoneType in kept:  # X | None
            (other,) = [a for a in kept if a is not NoneType]
            return _decodable(other) | None
        return Any
    return Any
