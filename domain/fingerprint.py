"""Request fingerprints: how a replayed X-REQUEST-ID is told apart from a reused one.

A request body is measured before it is hashed: both the hash's canonical JSON and its
conversion of values recurse, and a body nested some hundreds of levels deep (a Strategy's
metadata, a command's body) raised RecursionError there: a 500, or a command retried until
it was dead-lettered. `MAX_DEPTH` is checked first, without recursion.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from domain.errors import FieldError, InvalidRequestError


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


#: Levels of objects and lists any request body may nest; the metadata rule is stricter.
MAX_DEPTH = 64


def depth_beyond(value: object, limit: int) -> bool:
    """Whether `value` nests objects and lists deeper than `limit` levels (iteratively)."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, Mapping) else item
            pending.extend((child, depth + 1) for child in children)
    return False


def request_fingerprint(kind: str, target: str, body: Mapping[str, Any]) -> str:
    """A stable hash of what was asked: key order and whitespace do not matter, values do."""
    if depth_beyond(body, MAX_DEPTH):
        raise InvalidRequestError(
            f"the request nests objects and lists deeper than {MAX_DEPTH} levels",
            errors=(FieldError("body", f"must not nest deeper than {MAX_DEPTH} levels"),),
        )
    canonical = json.dumps(
        {"kind": kind, "target": target, "body": _plain(body)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
