"""Settlement takes what pricing allotted at the locked prices instead of allotting again:
the same numbers to the unit, taken only for exactly the inputs they were made from."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from domain import ids, stages
from domain.allotment import AllottedChunks, Entry
from domain.chunk import OperationChunk, chunk_id
from domain.operation import Operation
from domain.services import Trading
from domain.statuses import OperationStatus, OperationType
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    check_all,
    funded,
    lock_and_fill,
    new_app,
    new_strategy,
    request,
    run,
    settle_all,
    with_buffer,
)

CODES = [f"P{i}" for i in range(7)]
SHIFTED = [
    {"underlying_currency": "BTC", "weight": "0.40"},
    {"underlying_currency": "ETH", "weight": "0.40"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
LOCKED = {"BTC": Decimal("61234.56"), "ETH": Decimal("2987.65"), "SOL": Decimal("151.23")}


def priced(
    kind: OperationType, *, keep: bool = True, buffer: Decimal = Decimal(0)
) -> tuple[Trading, Any, Operation]:
    """Seven enrolled Traders (one of them with too little float left to buy, for a top-up)
    and an Operation of `kind` on them, checked and locked at `LOCKED`, not yet settled;
    under a policy's cash `buffer` when one is given."""
    app = new_app(chunk_size=3, float_usd="8700.00")
    if not keep:
        app.allotted_chunks.keep = lambda *args, **kwargs: None  # type: ignore[method-assign]
    app.register_participants(PLATFORM, CODES)
    strategy = with_buffer(app, buffer) if buffer else new_strategy(app)
    enrolled = {"allocations": BLUE_CHIP, "participants": funded(CODES, "1200.00")}
    run(app, strategy, OperationType.ENROLLMENT, enrolled)
    body: dict[str, Any] = {"allocations": SHIFTED}
    if kind is OperationType.TOP_UP:
        body["participants"] = funded(CODES, "90.00")
    operation = check_all(app, request(app, strategy, kind, body).id)
    assert operation.status is OperationStatus.PRICING
    return app, strategy, lock_and_fill(app, operation.id, LOCKED)


def entries_of_chunk(app: Trading, operation: Operation, index: int) -> list[Entry]:
    chunk = app.find(chunk_id(operation.id, index), OperationChunk)
    assert chunk is not None
    return stages._entries(operation, chunk)


@pytest.mark.parametrize("buffer", [Decimal(0), Decimal("0.05")])
@pytest.mark.parametrize("kind", [OperationType.REBALANCE, OperationType.TOP_UP])
def test_settlement_takes_the_locked_allotments_and_settles_the_same(
    monkeypatch: pytest.MonkeyPatch, kind: OperationType, buffer: Decimal
) -> None:
    allotting: list[int] = []
    allot = stages.allot

    def counted(*args: Any, **kwargs: Any) -> Any:
        allotting.append(1)
        return allot(*args, **kwargs)

    monkeypatch.setattr(stages, "allot", counted)
    outcomes = []
    for keep in (True, False):
        app, strategy, operation = priced(kind, keep=keep, buffer=buffer)
        assert operation.parameters.get("cash_buffer", "0") == str(buffer)
        allotting.clear()
        settled = settle_all(app, operation.id)
        allotted = len(allotting)
        traders = {
            code: app.repository.get(ids.trader_id(strategy.id, code)).holdings for code in CODES
        }
        outcomes.append((settled.status, settled.counts, settled.residual, traders, allotted))
    (kept_status, kept_counts, kept_residual, kept_traders, kept_allotted) = outcomes[0]
    (again_status, again_counts, again_residual, again_traders, again_allotted) = outcomes[1]
    assert kept_allotted == 0 and again_allotted == 3  # three chunks allotted again
    assert kept_status is again_status is OperationStatus.SETTLED
    assert kept_counts == again_counts and kept_residual == again_residual
    assert kept_traders == again_traders


def test_allotments_are_taken_once_and_only_for_their_own_inputs() -> None:
    app, _, operation = priced(OperationType.REBALANCE)
    kept = app.allotted_chunks
    first, second, third = (entries_of_chunk(app, operation, i) for i in range(3))
    other_prices = {**LOCKED, "BTC": LOCKED["BTC"] + 1}
    terms = stages.operation_terms(operation)
    buffered = replace(terms, cash_buffer=Decimal("0.05"))

    assert kept.take(operation.id, 0, first, other_prices, Decimal(0), terms) is None
    assert kept.take(operation.id, 0, first, LOCKED, Decimal(0), buffered) is None
    taken = kept.take(operation.id, 0, first, LOCKED, Decimal(0), terms)
    assert taken is not None and [a.code for a in taken] == [e.order.code for e in first]
    assert kept.take(operation.id, 0, first, LOCKED, Decimal(0), terms) is None  # taken once
    assert kept.take(operation.id, 1, second, LOCKED, Decimal(1), terms) is None  # another budget
    assert kept.take(operation.id, 2, first, LOCKED, Decimal(0), terms) is None  # other Traders
    del third


def test_older_operations_are_dropped_past_the_limit() -> None:
    app, _, operation = priced(OperationType.REBALANCE)
    book = app.pricing_book(operation.id)
    book.blocks(LOCKED)
    kept = AllottedChunks(limit=len(CODES) + 1)
    kept.keep(operation.id, book, LOCKED)
    kept.keep(uuid4(), book, LOCKED)  # a later Operation's, as large
    first = entries_of_chunk(app, operation, 0)
    terms = stages.operation_terms(operation)
    assert kept.take(operation.id, 0, first, LOCKED, Decimal(0), terms) is None  # dropped, oldest


def test_a_packed_book_keeps_no_allotments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stages, "PACK_ABOVE", 0)
    app, _, operation = priced(OperationType.REBALANCE)
    book = app.pricing_book(operation.id)
    book.blocks(LOCKED)
    assert book.allotted(LOCKED) is None
    assert settle_all(app, operation.id).status is OperationStatus.SETTLED
