"""What every stage handler gets: the domain service, the venue ports, and a way to call the
synchronous domain off the event loop (with optimistic-concurrency conflicts retried)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from domain.services import Trading
from domain.venue import ExecutionVenue, QuoteProvider

T = TypeVar("T")

#: Runs `fn(*args)` in a worker thread, running it again when a concurrent writer won the race.
SyncCaller = Callable[..., Awaitable[Any]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StageContext:
    trading: Trading
    quotes: QuoteProvider
    venue: ExecutionVenue
    call: SyncCaller
    clock: Callable[[], datetime] = utc_now
