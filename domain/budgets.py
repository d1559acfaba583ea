"""Request budgets as token buckets: how much a caller may do, and for how long it must wait.

A bucket holds at most `burst` tokens and gains `per_second` of them continuously; a request
costs one. So over any window of `w` seconds a bucket lets through at most
`burst + per_second * w` requests: a client may spend its burst at once, then goes at the rate.

Pure arithmetic: the time is an argument (seconds on a monotonic clock), never read here,
so the same numbers give the same answers in tests and in the server.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """`per_second` tokens gained each second, at most `burst` held."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise ValueError("per_second must be positive")
        if self.burst < 1:
            raise ValueError("burst must be at least 1")


@dataclass
class TokenBucket:
    rate: Rate
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: Rate, now: float) -> TokenBucket:
        return cls(rate, float(rate.burst), now)

    def wait(self, now: float, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are there (0.0: now); nothing is taken."""
        self._refill(now)
        missing = cost - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate.per_second

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens and answer 0.0, or take nothing and answer the seconds to wait."""
        waiting = self.wait(now, cost)
        if waiting == 0.0:
            self.tokens -= cost
        return waiting

    def refund(self, now: float, cost: float = 1.0) -> None:
        """Give back what `take` took for something that turned out not to count."""
        self._refill(now)
        self.tokens = min(float(self.rate.burst), self.tokens + cost)

    def _refill(self, now: float) -> None:
        # A clock that steps back gives nothing: time already credited is not credited twice.
        if now > self.updated:
            gained = (now - self.updated) * self.rate.per_second
            self.tokens = min(float(self.rate.burst), self.tokens + gained)
            self.updated = now


class KeyedBuckets:
    """One bucket per key (an api key, a platform), created full on first use.

    Bounded: past `max_keys` the least recently used bucket is forgotten. Forgetting can only
    favour its owner (it comes back full), and only keys that are in use compete for room.
    """

    def __init__(self, rate: Rate, max_keys: int = 10_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: str, now: float, cost: float = 1.0) -> float:
        return self._bucket(key, now).wait(now, cost)

    def take(self, key: str, now: float, cost: float = 1.0) -> float:
        return self._bucket(key, now).take(now, cost)

    def refund(self, key: str, now: float, cost: float = 1.0) -> None:
        self._bucket(key, now).refund(now, cost)

    def _bucket(self, key: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(self.rate, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket


class ExpiringSet:
    """Items remembered for `ttl_s` seconds after they were added, at most `max_items` of them
    (the least recently added or seen goes first)."""

    def __init__(self, ttl_s: float, max_items: int = 10_000) -> None:
        if not ttl_s > 0 or max_items < 1:
            raise ValueError("ttl_s must be positive and max_items at least 1")
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def add(self, item: bytes, now: float) -> None:
        self._expiry[item] = now + self.ttl_s
        self._expiry.move_to_end(item)
        while len(self._expiry) > self.max_items:
            self._expiry.popitem(last=False)

    def holds(self, item: bytes, now: float) -> bool:
        expiry = self._expiry.get(item)
        if expiry is None:
            return False
        if now >= expiry:
            del self._expiry[item]
            return False
        self._expiry.move_to_end(item)
        return True
