"""Cancel and pricing at the same moment, many times, on the real event store: the
cancellation's `Failing` and the lock's `PricesLocked` are both the Operation's next version,
so exactly one wins. Either the prices are locked and the cancellation is refused
(`operation_not_cancellable`), or the cancellation is recorded, the lock does nothing, and
the release ends the Operation `cancelled` with every hold released."""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain import ids
from domain.audit import AuditLoader, verify_operation
from domain.errors import OperationNotCancellableError
from domain.statuses import OperationStatus, OperationType
from domain.trader import Trader
from infra.eventstore.store import PostgresTrading, retry_on_conflict
from tests.fixtures.postgres import scratch_database
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    check_all,
    fitting_quotes,
    funded,
    lock_and_fill,
    new_strategy,
    request,
    run,
    settle_all,
)

pytestmark = pytest.mark.integration

ROUNDS = 30
CODES = ["R1", "R2", "R3", "R4"]


@pytest.fixture(scope="module")
def trading(postgres_url: str) -> Iterator[PostgresTrading]:
    with scratch_database(postgres_url, "cancel_race") as url:
        app = PostgresTrading(url, chunk_size=2)
        try:
            app.ensure_default_catalogue()
            app.register_participants(PLATFORM, CODES)
            app.deposit_float(PLATFORM, "USD", Decimal(1_000_000), "RACE")
            yield app
        finally:
            app.close()


def test_cancel_and_pricing_race_and_exactly_one_wins(trading: PostgresTrading) -> None:
    strategy = new_strategy(trading)
    body = {"allocations": BLUE_CHIP, "participants": funded(CODES, "100.00")}
    enrolled = run(trading, strategy, OperationType.ENROLLMENT, body)
    assert enrolled.status is OperationStatus.SETTLED
    winners = Counter(race_once(trading, strategy.id, body) for _ in range(ROUNDS))
    print(f"cancel vs pricing over {ROUNDS} rounds: {dict(winners)}")
    assert winners.total() == ROUNDS


def race_once(trading: PostgresTrading, strategy_id: UUID, body: dict[str, Any]) -> str:
    """One top-up checked and its float reserved, then its lock and a cancellation at once:
    which won, after checking that the loser left no trace."""
    strategy = trading.strategy(PLATFORM, strategy_id)
    operation = request(trading, strategy, OperationType.TOP_UP, body)
    check_all(trading, operation.id)
    quotes = fitting_quotes(trading, operation.id)  # the float reserved, as pricing does
    start = threading.Barrier(2)
    refused: list[OperationNotCancellableError] = []

    def lock() -> None:
        start.wait()
        retry_on_conflict(lambda: trading.lock_prices(operation.id, quotes))

    def cancel() -> None:
        start.wait()
        try:
            retry_on_conflict(lambda: trading.cancel_operation(PLATFORM, uuid4(), operation.id))
        except OperationNotCancellableError as error:
            refused.append(error)

    threads = [threading.Thread(target=lock), threading.Thread(target=cancel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    after = trading.operation(operation.id)
    if refused:
        assert after.status is OperationStatus.SETTLING and after.locked_prices
        assert not after.failure
        # Finish it, so the next round's Traders are free again.
        lock_and_fill(trading, operation.id)
        assert settle_all(trading, operation.id).status is OperationStatus.SETTLED
        return "priced"
    assert after.cancelled and not after.locked_prices
    assert after.status is OperationStatus.PRICING
    for index in range(after.chunk_count):
        retry_on_conflict(functools.partial(trading.release_chunk, operation.id, index))
    ended = trading.operation(operation.id)
    assert ended.status is OperationStatus.CANCELLED
    assert verify_operation(AuditLoader(trading).load(ended)) == []
    for code in CODES:
        trader = trading.find(ids.trader_id(strategy_id, code), Trader)
        assert trader is None or trader.held_by is None
    return "cancelled"
