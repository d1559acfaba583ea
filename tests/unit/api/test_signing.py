"""Request signing (spec §7.2): the payload rule, both secret forms, the 60 s window.

The expected signatures were computed outside Python, with
`printf '%s' PAYLOAD | openssl dgst -sha256 -hmac KEY -binary | base64`, so a mistake shared
by `sign` and `signature_matches` cannot hide behind itself.
"""

from __future__ import annotations

import base64

import pytest

from api.auth import (
    SIGNATURE_WINDOW_S,
    check_freshness,
    parse_timestamp,
    sign,
    signature_matches,
    signing_payload,
)
from api.errors import ProblemError

SECRET = b"portfolio-strategies-test-secret"  # 32 bytes, as issued
SECRET_B64 = "cG9ydGZvbGlvLXN0cmF0ZWdpZXMtdGVzdC1zZWNyZXQ="
TIMESTAMP = 1714445704
ENROLL_PATH = "/strategies/5b2c/enroll?dry=1"
ENROLL_BODY = b'{"participants":[]}'
# HMAC key = the decoded secret bytes (zerohash's sample code).
ENROLL_SIGNED_WITH_BYTES = "830uxdl56GR7ZGMh4Bv1xRORNw3PVaIXPJc5V2KTo0A="
# HMAC key = the base64 text of the secret.
ENROLL_SIGNED_WITH_TEXT = "feE3bDxOCBb7kt3Sn3J/QtEFOQkSn36Ldau6LK7Rj8s="
# GET without body: "{}" stands in for it.
LIST_SIGNED = "REI1L9OvG8IbCfNYIkBqfz9l6GxXgd9xYFi5iVD6t+0="


def test_the_test_secret_is_the_base64_of_the_bytes() -> None:
    assert base64.b64encode(SECRET).decode() == SECRET_B64


def test_payload_joins_timestamp_method_route_with_query_and_body() -> None:
    payload = signing_payload(TIMESTAMP, "post", ENROLL_PATH, ENROLL_BODY)
    assert payload == b'1714445704POST/strategies/5b2c/enroll?dry=1{"participants":[]}'


@pytest.mark.parametrize("method", ["GET", "DELETE", "HEAD"])
def test_a_request_without_body_signs_an_empty_json_object(method: str) -> None:
    assert signing_payload(TIMESTAMP, method, "/x", b"") == f"1714445704{method}/x{{}}".encode()
    assert signing_payload(TIMESTAMP, method, "/x", None).endswith(b"{}")


def test_a_post_without_body_signs_nothing_for_the_body() -> None:
    assert signing_payload(TIMESTAMP, "POST", "/x", b"") == b"1714445704POST/x"


def test_a_delete_with_a_body_signs_that_body() -> None:
    assert signing_payload(TIMESTAMP, "DELETE", "/x", b'{"a":1}').endswith(b'{"a":1}')


def test_sign_with_the_issued_base64_text_decodes_it_first() -> None:
    assert sign(SECRET_B64, TIMESTAMP, "POST", ENROLL_PATH, ENROLL_BODY) == (
        ENROLL_SIGNED_WITH_BYTES
    )


def test_sign_with_bytes_uses_them_as_the_key() -> None:
    assert sign(SECRET, TIMESTAMP, "POST", ENROLL_PATH, ENROLL_BODY) == ENROLL_SIGNED_WITH_BYTES
    assert sign(SECRET_B64.encode(), TIMESTAMP, "POST", ENROLL_PATH, ENROLL_BODY) == (
        ENROLL_SIGNED_WITH_TEXT
    )


def test_get_signature_matches_the_openssl_vector() -> None:
    signed = sign(SECRET, str(TIMESTAMP), "GET", "/strategies/traders?page=2&size=10")
    assert signed == LIST_SIGNED


@pytest.mark.parametrize("signature", [ENROLL_SIGNED_WITH_BYTES, ENROLL_SIGNED_WITH_TEXT])
def test_the_server_accepts_both_secret_forms(signature: str) -> None:
    payload = signing_payload(TIMESTAMP, "POST", ENROLL_PATH, ENROLL_BODY)
    assert signature_matches(SECRET, signature, payload)


def test_the_query_string_is_part_of_what_is_signed() -> None:
    payload = signing_payload(TIMESTAMP, "POST", "/strategies/5b2c/enroll", ENROLL_BODY)
    assert not signature_matches(SECRET, ENROLL_SIGNED_WITH_BYTES, payload)


@pytest.mark.parametrize(
    ("method", "path", "body", "timestamp"),
    [
        ("PATCH", ENROLL_PATH, ENROLL_BODY, TIMESTAMP),
        ("POST", ENROLL_PATH, b'{"participants":[ ]}', TIMESTAMP),
        ("POST", ENROLL_PATH, ENROLL_BODY, TIMESTAMP + 1),
        ("POST", ENROLL_PATH + "&x=1", ENROLL_BODY, TIMESTAMP),
    ],
)
def test_any_change_to_the_request_breaks_the_signature(
    method: str, path: str, body: bytes, timestamp: int
) -> None:
    payload = signing_payload(timestamp, method, path, body)
    assert not signature_matches(SECRET, ENROLL_SIGNED_WITH_BYTES, payload)


def test_a_signature_made_with_another_secret_is_refused() -> None:
    payload = signing_payload(TIMESTAMP, "POST", ENROLL_PATH, ENROLL_BODY)
    other = sign(b"x" * 32, TIMESTAMP, "POST", ENROLL_PATH, ENROLL_BODY)
    assert not signature_matches(SECRET, other, payload)
    assert not signature_matches(SECRET, "", payload)
    assert not signature_matches(SECRET, "not base64 at all é", payload)


@pytest.mark.parametrize("skew", [0, 1, -1, SIGNATURE_WINDOW_S, -SIGNATURE_WINDOW_S])
def test_timestamps_within_sixty_seconds_either_side_are_fresh(skew: int) -> None:
    check_freshness(TIMESTAMP, now=TIMESTAMP + skew)


@pytest.mark.parametrize("skew", [61, -61, 60.5, -60.5, 3600])
def test_timestamps_beyond_sixty_seconds_are_stale(skew: float) -> None:
    with pytest.raises(ProblemError) as refused:
        check_freshness(TIMESTAMP, now=TIMESTAMP + skew)
    assert (refused.value.status, refused.value.code) == (401, "stale_timestamp")


@pytest.mark.parametrize(
    "value", ["", "abc", "1714445704.5", "-1714445704", "1e9", "12345678901234"]
)
def test_a_timestamp_that_is_not_whole_seconds_is_invalid(value: str) -> None:
    with pytest.raises(ProblemError) as refused:
        parse_timestamp(value)
    assert (refused.value.status, refused.value.code) == (401, "invalid_timestamp")


def test_a_timestamp_in_seconds_parses() -> None:
    assert parse_timestamp("1714445704") == TIMESTAMP
