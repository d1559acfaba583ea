"""Write-side throughput of PostgresTrading: `uv run python bench/store_bench.py --traders 5000`.

Runs on a fresh database: a new one on the DATABASE_URL server when set (dropped afterwards),
otherwise an embedded PostgreSQL in a temporary folder. Enrolls N traders in chunks, then tops
them up with several worker threads checking chunks at once, and prints rates only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID, uuid4

import psycopg
from eventsourcing.persistence import RecordConflictError

from domain import ids
from domain.pricing import BlockFill, LockedQuote
from domain.statuses import OperationType, Side
from infra.devservices.embedded_postgres import EmbeddedPostgres
from infra.eventstore.store import PostgresTrading, retry_on_conflict

T = TypeVar("T")
PLATFORM = "bench"
PRICES = {"BTC": Decimal("60000.00"), "ETH": Decimal("3000.00"), "SOL": Decimal("150.00")}
ALLOCATIONS = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traders", type=int, default=5000)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=4, help="workers for the top-up check")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--sample", type=int, default=1000, help="traders read one by one")
    args = parser.parse_args()
    with fresh_database() as url:
        app = PostgresTrading(url, chunk_size=args.chunk_size, pool_size=args.pool_size)
        try:
            run(app, args)
        finally:
            app.close()


def run(app: PostgresTrading, args: argparse.Namespace) -> None:
    n = args.traders
    codes = [f"B{i:07d}" for i in range(n)]
    app.ensure_default_catalogue()
    app.deposit_float(PLATFORM, "USD", Decimal(2000 * n + 1), "BENCH-FLOAT")
    took, _ = timed(lambda: app.register_participants(PLATFORM, codes))
    report("register_participants", n, took, "participants/s")
    strategy, _ = app.create_strategy(PLATFORM, uuid4(), {"quoted_currency": "USD"})

    body = {"allocations": ALLOCATIONS, "participants": participants(codes)}
    operation, _ = app.request_operation(
        PLATFORM, strategy.id, uuid4(), OperationType.ENROLLMENT, body
    )
    chunks = range(operation.chunk_count)
    events = EventCounter(app)
    took, _ = timed(lambda: [app.check_chunk(operation.id, i, PRICES) for i in chunks])
    report("check_chunk (enroll, 1 thread)", n, took, "traders/s", events.since())
    lock_and_fill(app, operation.id)
    took, _ = timed(lambda: [app.settle_chunk(operation.id, i) for i in chunks])
    report("settle_chunk (enroll, 1 thread)", n, took, "traders/s", events.since())

    trader_ids = [ids.trader_id(strategy.id, c) for c in codes]
    size = args.chunk_size
    batches = [trader_ids[i : i + size] for i in range(0, n, size)]
    took, loaded = timed(lambda: sum(len(app.get_many(b)) for b in batches))
    report(f"get_many ({size} per call)", loaded, took, "traders/s")
    sample = trader_ids[: args.sample]
    took, _ = timed(lambda: [app.repository.get(t) for t in sample])
    report("repository.get (one by one)", len(sample), took, "traders/s")

    top_up = {"allocations": ALLOCATIONS, "participants": participants(codes, "100.00")}
    kind = OperationType.TOP_UP
    operation, _ = app.request_operation(PLATFORM, strategy.id, uuid4(), kind, top_up)
    chunks = range(operation.chunk_count)
    threads = args.threads
    conflicts = ConflictCounter()
    check = lambda i: app.check_chunk(operation.id, i, PRICES)  # noqa: E731
    took = in_threads(threads, check, chunks, conflicts)
    label = f"check_chunk (top-up, {threads} threads)"
    report(label, n, took, "traders/s", events.since(), f"conflicts retried: {conflicts.take()}")
    lock_and_fill(app, operation.id)
    settle = lambda i: app.settle_chunk(operation.id, i)  # noqa: E731
    took = in_threads(threads, settle, chunks, conflicts)
    label = f"settle_chunk (top-up, {threads} threads)"
    report(label, n, took, "traders/s", events.since(), f"conflicts retried: {conflicts.take()}")


def in_threads(
    threads: int, stage: Callable[[int], Any], chunks: range, conflicts: ConflictCounter
) -> float:
    """Every chunk's stage call on a pool of worker threads, each retried on conflicts."""

    def call(index: int) -> Any:
        # Every chunk of one Operation writes the Operation and the float account, so
        # workers on the same Operation collide on nearly every save: a generous budget.
        counted = conflicts.counting(lambda: stage(index))
        return retry_on_conflict(counted, attempts=40, base_delay=0.05)

    with ThreadPoolExecutor(threads) as pool:
        took, _ = timed(lambda: list(pool.map(call, chunks)))
    return took


def participants(codes: list[str], amount: str = "1000.00") -> list[dict[str, Any]]:
    return [{"participant_code": c, "amount": amount, "auto_rebalance": True} for c in codes]


def lock_and_fill(app: PostgresTrading, operation_id: UUID) -> None:
    quotes = {
        a: LockedQuote(a, PRICES[a], f"quote-{a}", "2026-11-26T00:00:00Z")
        for a in app.assets_to_price(operation_id)
    }
    app.lock_prices(operation_id, quotes)
    for asset, order in app.operation(operation_id).block_orders.items():
        fill = BlockFill(asset, Side(order["side"]), Decimal(order["quantity"]), PRICES[asset], "f")
        app.record_fill(operation_id, fill)


class EventCounter:
    """Events committed since the last call, from the notification log's high-water mark."""

    def __init__(self, app: PostgresTrading) -> None:
        self.app = app
        self.last = app.recorder.max_notification_id() or 0

    def since(self) -> int:
        now = self.app.recorder.max_notification_id() or 0
        count, self.last = now - self.last, now
        return count


class ConflictCounter:
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def counting(self, fn: Callable[[], T]) -> Callable[[], T]:
        def call() -> T:
            try:
                return fn()
            except RecordConflictError:
                with self._lock:
                    self.count += 1
                raise

        return call

    def take(self) -> int:
        with self._lock:
            count, self.count = self.count, 0
        return count


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def report(what: str, count: int, took: float, unit: str, events: int = 0, note: str = "") -> None:
    line = f"{what:<38} {count:>7} in {took:7.2f} s = {count / took:9.0f} {unit}"
    if events:
        line += f"; {events} events = {events / took:7.0f} events/s"
    if note:
        line += f"; {note}"
    print(line)  # noqa: T201


@contextmanager
def fresh_database() -> Iterator[str]:
    external = os.environ.get("DATABASE_URL", "").strip()
    if not external:
        with tempfile.TemporaryDirectory() as folder, EmbeddedPostgres(Path(folder)) as server:
            yield server.start()
        return
    name = f"bench_{uuid4().hex[:12]}"
    with psycopg.connect(external, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(external)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(external, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
