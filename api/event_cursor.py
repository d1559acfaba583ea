"""Cursors of `GET /strategies/events` that tell a platform nothing about the others.

The feed pages through the event store's log, whose positions count every platform's events:
a client that saw plain positions could subtract two of its own and learn how busy everyone
else was. So positions leave the API only inside an opaque cursor, bound to the platform that
may use it (another platform's cursor is an `invalid_cursor`, like garbage).

Deterministic authenticated encryption (SIV with HMAC-SHA256 as the PRF), so the same
position always gives the same cursor and a client can compare cursors for equality:

    plain  = position_be64                     (transaction 0: events from before tx ids)
           | transaction_be64 || position_be64  (every later event)
    iv     = HMAC(key, "iv" || platform || plain)[:16]
    cursor = base64url(iv || plain XOR HMAC(key, "pad" || iv)[:len(plain)])

A position is a place in the log, (writing transaction, notification id) (see
`infra.eventstore.notification_log`). Cursors given before transactions were recorded hold
the notification id alone, and still open: to (0, id), where the same event still is.

Opening recomputes the iv from the decrypted position and compares it in constant time.
The key is derived from the deployment's master key, so cursors survive restarts and work
on every API instance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from infra.eventstore.notification_log import START as LOG_START
from infra.eventstore.notification_log import LogPosition

PURPOSE = b"portfolio-strategies/events-cursor/v1"
START = ""  # no cursor: from the beginning of the log
_IV_BYTES = 16
_POSITION_BYTES = 8
_LENGTHS = (_IV_BYTES + _POSITION_BYTES, _IV_BYTES + 2 * _POSITION_BYTES)


class InvalidCursorError(ValueError):
    """The text is not a cursor this platform was given."""


def seal(key: bytes, platform_id: str, position: LogPosition) -> str:
    plain = position.notification_id.to_bytes(_POSITION_BYTES, "big")
    if position.transaction:
        plain = position.transaction.to_bytes(_POSITION_BYTES, "big") + plain
    iv = _iv(key, platform_id, plain)
    token = iv + _xor(plain, _pad(key, iv, len(plain)))
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def open_cursor(key: bytes, platform_id: str, cursor: str) -> LogPosition:
    if cursor == START:
        return LOG_START
    try:
        token = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursorError(cursor) from None
    if len(token) not in _LENGTHS or not cursor.isascii():
        raise InvalidCursorError(cursor)
    iv, hidden = token[:_IV_BYTES], token[_IV_BYTES:]
    plain = _xor(hidden, _pad(key, iv, len(hidden)))
    if not hmac.compare_digest(iv, _iv(key, platform_id, plain)):
        raise InvalidCursorError(cursor)
    transaction = int.from_bytes(plain[:-_POSITION_BYTES], "big")  # b"" -> 0
    return LogPosition(transaction, int.from_bytes(plain[-_POSITION_BYTES:], "big"))


def _iv(key: bytes, platform_id: str, plain: bytes) -> bytes:
    message = b"iv\0" + platform_id.encode() + b"\0" + plain
    return hmac.digest(key, message, hashlib.sha256)[:_IV_BYTES]


def _pad(key: bytes, iv: bytes, length: int) -> bytes:
    return hmac.digest(key, b"pad\0" + iv, hashlib.sha256)[:length]


def _xor(data: bytes, pad: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, pad, strict=True))
