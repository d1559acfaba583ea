from __future__ import annotations

from uuid import uuid4

import pytest

from infra.bus import Delivery
from workers.commands import UnreadableCommandError, read_command


def delivery(
    value: bytes, key: str | None = None, headers: dict[str, str] | None = None
) -> Delivery:
    return Delivery(
        topic="strategies.commands",
        value=value,
        key=str(uuid4()) if key is None else key,
        headers={"platform": "p1"} if headers is None else headers,
        partition=0,
        offset=5,
    )


def test_a_well_formed_command_is_read_with_its_platform_and_request_id() -> None:
    request_id = uuid4()
    platform, read_id, command = read_command(
        delivery(
            b'{"command": "create_strategy", "body": {"quoted_currency": "USD"}}', str(request_id)
        )
    )
    assert (platform, read_id, command.command) == ("p1", request_id, "create_strategy")


@pytest.mark.parametrize(
    ("value", "key", "headers", "reason"),
    [
        (b'{"command": "enroll"}', None, {}, "missing_platform"),
        (b'{"command": "enroll"}', "not-a-uuid", None, "invalid_request_id"),
        # A v1 (fixed: test ids must be the same in every collecting process).
        (
            b'{"command": "enroll"}',
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            None,
            "invalid_request_id",
        ),
        (b"{not json", None, None, "invalid_json"),
        (b'{"command": "enroll", "command": "create_strategy"}', None, None, "duplicate_key"),
        (b'{"command": "enroll", "body": {"a": 1, "a": 2}}', None, None, "duplicate_key"),
        (b'\xef\xbb\xbf{"command": "enroll"}', None, None, "unsupported_encoding"),
        ('{"command": "enroll"}'.encode("utf-16"), None, None, "unsupported_encoding"),
        (b'{"command": "enroll", "body": {"x": NaN}}', None, None, "invalid_json"),
        (b'{"command": "transfer"}', None, None, "invalid_command"),
        (b'{"command": "enroll", "extra": 1}', None, None, "invalid_command"),
        (b'{"command": "enroll", "strategy_id": "nope"}', None, None, "invalid_command"),
    ],
)
def test_unreadable_records_say_why(
    value: bytes, key: str | None, headers: dict[str, str] | None, reason: str
) -> None:
    with pytest.raises(UnreadableCommandError) as caught:
        read_command(delivery(value, key, headers))
    assert caught.value.reason == reason
