"""Webhook signing (sender) against verification (receiver), and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
from uuid import uuid4

from api.webhook_verify import verify_webhook
from workers.webhooks import RetryPolicy, notification_id, signed_headers

SECRET = "whsec_test"
BODY = b'{"id":"bd92c25a-eaf8-3e95-ab7a-59f3e2275234","status":"settled"}'
NOW = 1_780_000_000_000


def headers(*, legacy: bool = False, now_ms: int = NOW) -> dict[str, str]:
    return signed_headers(
        SECRET, BODY, "trade_strategy.trader.created", uuid4(), legacy=legacy, now_ms=now_ms
    )


def test_a_signed_notification_verifies() -> None:
    assert verify_webhook(SECRET, BODY, headers(), now_ms=NOW)


def test_the_v2_signature_covers_timestamp_dot_body() -> None:
    sent = headers()
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sent["x-zh-hook-signature-v2"] == expected
    assert sent["x-zh-hook-timestamp"] == str(NOW)


def test_header_names_are_matched_case_insensitively() -> None:
    upper = {name.upper(): value for name, value in headers().items()}
    assert verify_webhook(SECRET, BODY, upper, now_ms=NOW)


def test_an_altered_body_or_wrong_secret_fails() -> None:
    sent = headers()
    assert not verify_webhook(SECRET, BODY + b" ", sent, now_ms=NOW)
    assert not verify_webhook("whsec_other", BODY, sent, now_ms=NOW)


def test_a_changed_timestamp_fails_because_it_is_signed() -> None:
    sent = dict(headers(), **{"x-zh-hook-timestamp": str(NOW + 1)})
    assert not verify_webhook(SECRET, BODY, sent, now_ms=NOW)


def test_timestamps_within_five_minutes_either_way_are_accepted_and_older_refused() -> None:
    sent = headers()
    assert verify_webhook(SECRET, BODY, sent, now_ms=NOW + 300_000)
    assert verify_webhook(SECRET, BODY, sent, now_ms=NOW - 300_000)
    assert not verify_webhook(SECRET, BODY, sent, now_ms=NOW + 300_001)
    assert not verify_webhook(SECRET, BODY, sent, now_ms=NOW - 300_001)
    assert verify_webhook(SECRET, BODY, sent, now_ms=NOW + 3_600_000, tolerance_s=3600)


def test_missing_or_malformed_headers_fail() -> None:
    sent = headers()
    assert not verify_webhook(SECRET, BODY, {}, now_ms=NOW)
    without = {k: v for k, v in sent.items() if k != "x-zh-hook-signature-v2"}
    assert not verify_webhook(SECRET, BODY, without, now_ms=NOW)
    assert not verify_webhook(
        SECRET, BODY, dict(sent, **{"x-zh-hook-timestamp": "soon"}), now_ms=NOW
    )


def test_legacy_signature_is_sent_only_when_asked_and_signs_the_body_alone() -> None:
    assert "x-zh-hook-signature-256" not in headers()
    legacy = headers(legacy=True)["x-zh-hook-signature-256"]
    assert legacy == hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()


def test_notification_ids_are_stable_and_distinct_per_object_and_type() -> None:
    sub, obj = uuid4(), uuid4()
    first = notification_id(sub, 7, "trade_strategy.operation.status_changed", obj)
    assert first == notification_id(sub, 7, "trade_strategy.operation.status_changed", obj)
    assert first != notification_id(sub, 8, "trade_strategy.operation.status_changed", obj)
    assert first != notification_id(sub, 7, "trade_strategy.operation.status_changed", uuid4())
    assert first != notification_id(uuid4(), 7, "trade_strategy.operation.status_changed", obj)


def test_retry_schedule_is_four_quick_then_three_doubling_then_dead() -> None:
    policy = RetryPolicy()
    schedule = [policy.retry_in(n) for n in range(1, 9)]
    assert schedule == [0.25, 0.25, 0.25, 0.25, 1.0, 2.0, 4.0, None]
