"""CPU seconds this process spends per pipeline stage, for the benchmark's per-Trader figures.

Stage calls run synchronously on worker threads (`Engine.call`), so the calling thread's own
CPU clock (`time.thread_time`) around a call is exactly that call's cost, whatever else the
process runs meanwhile. Work on the event loop (the relay's publishing, the in-process bus,
inline projections) interleaves at every await and cannot be split that way: the benchmark reads
the loop thread's clock as one figure.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

#: The stage each `Trading` call belongs to; calls not named here count as "other".
STAGE_OF_CALL = {
    "record_indicative_prices": "check",
    "check_chunk": "check",
    "reserve_float": "price",
    "pricing_book": "price",
    "blocks": "price",  # PricingBook.blocks: one allotment pass over every chunk
    "open_pricing": "price",
    "lock_prices": "price",
    "record_fill": "price",
    "fail_operation": "price",
    "settle_chunk": "settle",
    "release_chunk": "settle",
}


class CpuMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self._seconds[stage] += spent

    def totals(self) -> dict[str, float]:
        with self._lock:
            return dict(self._seconds)


#: The process's meter (stages, the relay's reads); read by `strategies bench`.
CPU = CpuMeter()


def stage_of(call: object) -> str:
    return STAGE_OF_CALL.get(getattr(call, "__name__", ""), "other")
