"""Event-feed cursors: positions go out sealed, bound to one platform, and come back intact."""

from __future__ import annotations

import base64
import secrets

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.event_cursor import START, InvalidCursorError, open_cursor, seal

KEY = secrets.token_bytes(32)
positions = st.integers(min_value=0, max_value=2**63 - 1)
platforms = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)


@given(positions, platforms)
def test_a_cursor_opens_to_its_position_for_its_platform(position: int, platform: str) -> None:
    cursor = seal(KEY, platform, position)
    assert open_cursor(KEY, platform, cursor) == position
    assert seal(KEY, platform, position) == cursor  # comparable: the same position, same text


@given(positions, platforms, platforms)
def test_another_platforms_cursor_does_not_open(position: int, mine: str, theirs: str) -> None:
    if mine == theirs:
        return
    with pytest.raises(InvalidCursorError):
        open_cursor(KEY, mine, seal(KEY, theirs, position))


@given(positions, st.integers(min_value=0, max_value=23), st.integers(min_value=1, max_value=255))
def test_a_tampered_cursor_does_not_open(position: int, index: int, flip: int) -> None:
    cursor = seal(KEY, "PLAT01", position)
    raw = bytearray(base64.urlsafe_b64decode(cursor + "="))
    raw[index] ^= flip
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidCursorError):
        open_cursor(KEY, "PLAT01", tampered)


@pytest.mark.parametrize("text", ["x", "-1", "0", "12345", "=" * 32, "é" * 32, "A" * 31, "A" * 33])
def test_anything_else_is_not_a_cursor(text: str) -> None:
    with pytest.raises(InvalidCursorError):
        open_cursor(KEY, "PLAT01", text)


def test_no_cursor_is_the_start_and_another_key_opens_nothing() -> None:
    assert open_cursor(KEY, "PLAT01", START) == 0
    with pytest.raises(InvalidCursorError):
        open_cursor(secrets.token_bytes(32), "PLAT01", seal(KEY, "PLAT01", 42))
