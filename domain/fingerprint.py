"""Request fingerprints: how a replayed X-REQUEST-ID is told apart from a reused one."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def request_fingerprint(kind: str, target: str, body: Mapping[str, Any]) -> str:
    """A stable hash of what was asked: key order and whitespace do not matter, values do."""
    canonical = json.dumps(
        {"kind": kind, "target": target, "body": _plain(body)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
