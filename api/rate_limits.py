"""Request budgets per api key and per platform: 429 `rate_limited` with `Retry-After`.

A request is counted once its signature is proven (an HMAC, cheap), before anything costly:
the passphrase check, the body, the route. Counting earlier would let anyone who knows a
platform's public api key spend that platform's budget with garbage signatures; counting
later would let a signed flood reach the costly parts. Both buckets must have room (the
request takes from both or from neither), so one busy key cannot spend the whole platform's
budget unnoticed, and several keys of one platform cannot multiply it.

The buckets live in this process: with several API processes behind a balancer each has its
own budgets, so the installation's limit is the setting times the processes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from api.errors import PROBLEM_MEDIA_TYPE, ProblemError
from domain.budgets import KeyedBuckets

if TYPE_CHECKING:
    from infra.settings_limits import AbuseLimits

Clock = Callable[[], float]


class RateLimitedError(ProblemError):
    """Raised when a caller has spent its budget; `Retry-After` says when it has room again."""

    def __init__(self, wait_s: float, detail: str) -> None:
        retry_after = max(1, math.ceil(wait_s))  # whole seconds, never early, never 0
        super().__init__(
            429,
            "rate_limited",
            f"{detail} Retry after {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class RequestBudgets:
    def __init__(self, limits: AbuseLimits, clock: Clock = time.monotonic) -> None:
        self._per_key = KeyedBuckets(limits.per_key)
        self._per_platform = KeyedBuckets(limits.per_platform)
        self._clock = clock
        self.refused = 0  # 429s answered, for tests and operators

    def admit(self, api_key: str, platform_id: str) -> None:
        now = self._clock()
        waits = {
            "api key": self._per_key.wait(api_key, now),
            "platform": self._per_platform.wait(platform_id, now),
        }
        which, wait = max(waits.items(), key=lambda item: item[1])
        if wait > 0:
            self.refused += 1
            raise RateLimitedError(wait, f"This {which} has used its request budget.")
        self._per_key.take(api_key, now)
        self._per_platform.take(platform_id, now)


def document_rate_limits(openapi: dict[str, Any]) -> dict[str, Any]:
    """Every signed operation (the ones taking `X-SCX-API-KEY`) may answer 429; idempotent."""
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            parameters = operation.get("parameters", ())
            if any(p.get("name") == "X-SCX-API-KEY" for p in parameters):
                operation.setdefault("responses", {}).setdefault(
                    "429",
                    {
                        "description": "Request budget spent; retry after the Retry-After seconds",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": dict(problem),
                    },
                )
    return openapi
