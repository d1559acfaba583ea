"""Aggregates this process loaded or saved, kept decoded so the next stage need not rebuild them.

A chunk's Traders are loaded by the credit check, saved with their holds, then loaded again by
the settlement moments later, and again by the next Operation's check: rebuilding each from
its snapshot and events (JSON decoding, event objects, mutators) was a fifth of the engine's
CPU. The cache keeps the last known state of each aggregate, and the store never trusts it
blindly: every load still asks PostgreSQL for the events after the cached version (one
statement per chunk, as before), so a write by another process or thread is folded in, and a
stale cache can only cost a few more events to decode, never a wrong state. Optimistic
concurrency is untouched: a save of a state built on an old version still conflicts.

Entries are never handed out: a load gets a private copy (`clone`), and a save stores a copy
of what it wrote, so a caller mutating its aggregate (or failing to save it) cannot change
what another thread or the next load sees. Bounded by a number of aggregates, least recently
used first out.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Aggregates kept by default: the Traders and participant profiles of a 100,000-Trader
#: Strategy with room to spare (about 1.5 KB each decoded).
DEFAULT_CACHE_SIZE = 250_000

_IMMUTABLE: frozenset[type[Any]] = frozenset(
    {str, int, float, bool, type(None), Decimal, UUID, datetime, date, bytes, frozenset}
)


def clone(aggregate: Any) -> Any:
    """A copy sharing nothing mutable with `aggregate`: containers are copied, immutable
    values shared. Aggregates hold JSON-like state (dicts, lists, strings, Decimals, UUIDs);
    anything else is deep-copied, so an unforeseen attribute costs time, never isolation."""
    twin = object.__new__(type(aggregate))
    twin.__dict__.update({k: _copied(v) for k, v in aggregate.__dict__.items()})
    return twin


def _copied(value: Any) -> Any:
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    if kind is dict:
        return {k: _copied(v) for k, v in value.items()}
    if kind is list:
        return [_copied(v) for v in value]
    if kind is tuple:
        return tuple(_copied(v) for v in value)
    if kind is set:
        return set(value)
    if isinstance(value, Enum):
        return value
    return copy.deepcopy(value)


class AggregateCache:
    """Thread-safe LRU of aggregates by id; `maxsize` 0 keeps nothing."""

    def __init__(
        self, maxsize: int = DEFAULT_CACHE_SIZE, skipped: tuple[type[Any], ...] = ()
    ) -> None:
        """`skipped`: kinds never kept (bulky ones whose count says nothing of their size)."""
        if maxsize < 0:
            raise ValueError("the aggregate cache size cannot be negative")
        self.maxsize = maxsize
        self.skipped = skipped
        self._entries: OrderedDict[UUID, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def versions(self, ids: Iterable[UUID]) -> dict[UUID, Any]:
        """The cached entries of `ids` (shared, not copies: read their version only, and
        `clone` one before use), marked as recently used."""
        found: dict[UUID, Any] = {}
        with self._lock:
            for aggregate_id in ids:
                entry = self._entries.get(aggregate_id)
                if entry is None:
                    self.misses += 1
                    continue
                self._entries.move_to_end(aggregate_id)
                found[aggregate_id] = entry
                self.hits += 1
        return found

    def keep(self, aggregates: Iterable[Any]) -> None:
        """Remember copies of these aggregates (a newer version replaces an older one; an
        older one never replaces a newer one, whichever thread comes last)."""
        if not self.maxsize:
            return
        copies = [clone(a) for a in aggregates if not isinstance(a, self.skipped)]
        with self._lock:
            for aggregate in copies:
                current = self._entries.get(aggregate.id)
                if current is not None and current.version > aggregate.version:
                    continue
                self._entries[aggregate.id] = aggregate
                self._entries.move_to_end(aggregate.id)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
