"""Event-feed cursors: positions go out sealed, bound to one platform, and come back intact."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.event_cursor import START, InvalidCursorError, open_cursor, seal
from infra.eventstore.notification_log import LogPosition

KEY = secrets.token_bytes(32)
ids = st.integers(min_value=0, max_value=2**63 - 1)
#: Transaction 0 is an event from before transaction ids were recorded (an 8-byte cursor).
positions = st.builds(LogPosition, st.integers(min_value=0, max_value=2**64 - 1), ids)
platforms = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)


@given(positions, platforms)
def test_a_cursor_opens_to_its_position_for_its_platform(
    position: LogPosition, platform: str
) -> None:
    cursor = seal(KEY, platform, position)
    assert open_cursor(KEY, platform, cursor) == position
    assert seal(KEY, platform, position) == cursor  # comparable: the same position, same text


@given(positions, platforms, platforms)
def test_another_platforms_cursor_does_not_open(
    position: LogPosition, mine: str, theirs: str
) -> None:
    if mine == theirs:
        return
    with pytest.raises(InvalidCursorError):
        open_cursor(KEY, mine, seal(KEY, theirs, position))


@given(positions, st.integers(min_value=0, max_value=31), st.integers(min_value=1, max_value=255))
def test_a_tampered_cursor_does_not_open(position: LogPosition, index: int, flip: int) -> None:
    cursor = seal(KEY, "PLAT01", position)
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[index % len(raw)] ^= flip
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidCursorError):
        open_cursor(KEY, "PLAT01", tampered)


@pytest.mark.parametrize("text", ["x", "-1", "0", "12345", "=" * 32, "é" * 32, "A" * 31, "A" * 33])
def test_anything_else_is_not_a_cursor(text: str) -> None:
    with pytest.raises(InvalidCursorError):
        open_cursor(KEY, "PLAT01", text)


def test_no_cursor_is_the_start_and_another_key_opens_nothing() -> None:
    assert open_cursor(KEY, "PLAT01", START) == (0, 0)
    with pytest.raises(InvalidCursorError):
        open_cursor(secrets.token_bytes(32), "PLAT01", seal(KEY, "PLAT01", LogPosition(9, 42)))


@given(ids, platforms)
def test_a_cursor_given_before_transactions_were_recorded_still_opens(
    position: int, platform: str
) -> None:
    """An older release sealed the notification id alone; that event is at (0, id) now."""
    plain = position.to_bytes(8, "big")
    iv = hmac.digest(KEY, b"iv\0" + platform.encode() + b"\0" + plain, hashlib.sha256)[:16]
    pad = hmac.digest(KEY, b"pad\0" + iv, hashlib.sha256)[:8]
    older = base64.urlsafe_b64encode(iv + bytes(a ^ b for a, b in zip(plain, pad, strict=True)))
    assert open_cursor(KEY, platform, older.decode().rstrip("=")) == (0, position)
