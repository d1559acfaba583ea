"""Receiver-side check of our webhooks (spec §8.2), standard library only, to copy as is.

    from api.webhook_verify import verify_webhook

    if not verify_webhook(SECRET, request_body_bytes, request_headers):
        return 401  # forged, altered, or replayed more than 5 minutes later

Then drop duplicates by `x-zh-hook-notification-id`, and order by the payload's `updated_at`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP = "x-zh-hook-timestamp"
SIGNATURE_V2 = "x-zh-hook-signature-v2"


def expected_signature(secret: str, timestamp: str, body: bytes) -> str:
    """hex(HMAC-SHA256(secret, timestamp + "." + body))."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now_ms: int | None = None,
    tolerance_s: int = 300,
) -> bool:
    """Whether `body` was signed with `secret` within `tolerance_s` of now (either way).

    Header names are matched case-insensitively; the comparison is constant-time.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp, signature = lowered.get(TIMESTAMP, ""), lowered.get(SIGNATURE_V2, "")
    if not timestamp.isdigit() or not signature:
        return False
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if abs(now - int(timestamp)) > tolerance_s * 1000:
        return False
    return hmac.compare_digest(expected_signature(secret, timestamp, body), signature.lower())
