"""Which failures poison an event (its own fault: recorded and passed over) and which are
outages or not-yets (retried as before), and how a poisoned event's error is kept."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import ValidationError

from infra.bus.messages import DomainEventMessage
from projections.poisoned import NotAppliedYetError, describe, is_poisonous, printable
from workers.webhooks import PlatformNotKnownYetError


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.UntranslatableCharacterError("\\u0000 cannot be converted to text"),
        asyncpg.exceptions.CharacterNotInRepertoireError("invalid byte sequence 0x00"),
        asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
        asyncpg.exceptions.CheckViolationError("violates check constraint"),
        asyncpg.exceptions.NotNullViolationError("null value in column"),
        asyncpg.exceptions.ProgramLimitExceededError("index row size exceeds maximum"),
        asyncpg.exceptions.DataError("invalid input for query argument $1"),
        KeyError("positions"),
        TypeError("unsupported operand"),
    ],
)
def test_the_events_own_faults_poison_it(error: Exception) -> None:
    assert is_poisonous(error)


def test_an_event_that_does_not_decode_is_poisoned() -> None:
    with pytest.raises(ValidationError) as unreadable:
        DomainEventMessage.model_validate_json(b"not an event")
    assert is_poisonous(unreadable.value)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.exceptions.DiskFullError("no space left on device"),
        asyncpg.exceptions.UndefinedTableError('relation "traders" does not exist'),
        asyncpg.exceptions.InternalServerError("cache lookup failed"),
        asyncpg.exceptions.InterfaceError("connection is closed"),
        TimeoutError(),
        ConnectionResetError(),
        OSError("no route to host"),
        PlatformNotKnownYetError("operation not folded yet"),
        NotAppliedYetError(),
    ],
)
def test_outages_and_not_yets_are_retried_not_poisoned(error: Exception) -> None:
    assert not is_poisonous(error)


def test_an_outage_raised_from_anything_is_still_an_outage() -> None:
    try:
        try:
            raise ConnectionResetError
        except ConnectionResetError as lost:
            raise RuntimeError("while flushing") from lost
    except RuntimeError as wrapped:
        assert not is_poisonous(wrapped)


def test_an_error_is_kept_bounded_and_storable() -> None:
    """The characters that poisoned the event must not poison its record too."""
    kind, message = describe(ValueError("bad \x00 value \ud800 " + "x" * 2000))
    assert kind == "ValueError"
    assert "\x00" not in message and "\\x00" in message
    message.encode("utf-8")  # no lone surrogate left
    assert len(message) == 500 and message.endswith("…")
    assert printable("short") == "short"
