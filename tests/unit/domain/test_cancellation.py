"""Cancelling an Operation before its prices are locked (issue 19): at every stage boundary,
nobody trades, every hold is released, every Execution ends cancelled (rejected ones stay
rejected), the Operation ends `cancelled`, and the audit finds nothing wrong."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from domain import ids
from domain.audit import AuditLoader, verify_operation
from domain.chunk import OperationChunk, chunk_id
from domain.errors import OperationNotCancellableError, OperationNotFoundError
from domain.operation import Operation
from domain.services import Trading
from domain.statuses import OperationReason, OperationStatus, OperationType
from domain.trader import Trader
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    PRICES,
    check_all,
    fitting_quotes,
    funded,
    new_app,
    new_strategy,
    request,
    run,
)

CODES = ["C1", "C2", "C3", "C4", "C5"]  # chunks of 3: two chunks


def enrollment(app: Trading) -> Operation:
    app.register_participants(PLATFORM, CODES)
    strategy = new_strategy(app)
    return request(
        app,
        strategy,
        OperationType.ENROLLMENT,
        {"allocations": BLUE_CHIP, "participants": funded(CODES)},
    )


def release_all(app: Trading, operation_id: UUID) -> Operation:
    """What the release tasks the cancellation's `Failing` derives do, chunk by chunk."""
    for index in range(app.operation(operation_id).chunk_count):
        app.release_chunk(operation_id, index)
    return app.operation(operation_id)


def cancelled_cleanly(app: Trading, operation: Operation) -> None:
    assert operation.status is OperationStatus.CANCELLED
    assert operation.status_reason is OperationReason.CANCELLED_BY_PLATFORM
    audit = AuditLoader(app).load(operation)
    assert verify_operation(audit) == []
    for code in CODES:
        trader = app.find(ids.trader_id(operation.strategy_id, code), Trader)
        assert trader is None or (trader.held_by is None and not trader.positions)
    account = app._float(PLATFORM, "USD")
    assert not [k for k in account.holds if str(operation.id) in k]


def test_a_cancellation_before_any_check_cancels_every_participant() -> None:
    app = new_app()
    operation = enrollment(app)
    cancelled, created = app.cancel_operation(PLATFORM, uuid4(), operation.id)
    assert created and cancelled.status is OperationStatus.VALIDATING  # ends once released
    # The check tasks arrive after it: they cancel their chunks instead of checking them.
    done = check_all(app, operation.id)
    assert done.status is OperationStatus.CANCELLED
    assert done.counts["cancelled"] == len(CODES) and done.counts["approved"] == 0
    chunks = app.get_many([chunk_id(operation.id, i) for i in range(done.chunk_count)])
    outcomes = {
        code: d["outcome"]
        for chunk in chunks.values()
        if isinstance(chunk, OperationChunk)
        for code, d in chunk.decisions.items()
    }
    assert outcomes == dict.fromkeys(CODES, "cancelled")
    assert release_all(app, operation.id).version == done.version  # the release tasks: no-ops
    cancelled_cleanly(app, done)


def test_a_cancellation_between_chunks_releases_the_holds_placed() -> None:
    app = new_app()
    operation = enrollment(app)
    app.record_indicative_prices(operation.id, PRICES)
    app.check_chunk(operation.id, 0)  # three Traders held
    held = app.find(ids.trader_id(operation.strategy_id, "C1"), Trader)
    assert held is not None and held.held_by == operation.id
    app.cancel_operation(PLATFORM, uuid4(), operation.id)
    app.check_chunk(operation.id, 1)  # arrives after: cancelled unchecked
    done = release_all(app, operation.id)
    assert done.status is OperationStatus.CANCELLED
    assert done.counts["approved"] == 3 and done.counts["cancelled"] == len(CODES)
    cancelled_cleanly(app, done)


def test_a_cancellation_between_a_chunks_check_and_its_barrier_is_counted_once() -> None:
    """The crash point: the chunk's holds are saved, the Operation's barrier is not."""
    app = new_app()
    operation = enrollment(app)
    app.record_indicative_prices(operation.id, PRICES)
    loaded = app.operation(operation.id)
    chunk = app.find(chunk_id(operation.id, 0), OperationChunk)
    assert chunk is not None
    app._check(loaded, chunk)  # the heavy step alone
    app.cancel_operation(PLATFORM, uuid4(), operation.id)
    done = release_all(app, operation.id)
    app.check_chunk(operation.id, 0)  # the check task's barrier, rerun: nothing more
    done = app.operation(operation.id)
    assert done.status is OperationStatus.CANCELLED
    assert done.counts["approved"] == 3 and done.counts["cancelled"] == len(CODES)
    cancelled_cleanly(app, done)


def test_a_cancellation_once_checked_before_the_float_is_reserved() -> None:
    app = new_app()
    operation = enrollment(app)
    assert check_all(app, operation.id).status is OperationStatus.PRICING
    app.cancel_operation(PLATFORM, uuid4(), operation.id)
    app.reserve_float(operation.id)  # the pricing step, late: reserves nothing
    assert not app.operation(operation.id).float_reserved
    done = release_all(app, operation.id)
    assert done.status is OperationStatus.CANCELLED and done.counts["cancelled"] == len(CODES)
    cancelled_cleanly(app, done)


def test_a_cancellation_while_pricing_releases_the_float_reservation() -> None:
    app = new_app()
    operation = enrollment(app)
    priced = check_all(app, operation.id)
    assert priced.status is OperationStatus.PRICING
    app.reserve_float(operation.id)
    balance = app._float(PLATFORM, "USD").balance
    assert [k for k in app._float(PLATFORM, "USD").holds if str(operation.id) in k]
    app.cancel_operation(PLATFORM, uuid4(), operation.id)
    # The pricing step, still running, finds it cancelled: nothing is locked.
    quotes = fitting_quotes(app, operation.id)
    app.lock_prices(operation.id, quotes)
    assert not app.operation(operation.id).locked_prices
    done = release_all(app, operation.id)
    assert done.status is OperationStatus.CANCELLED
    assert app._float(PLATFORM, "USD").balance == balance
    cancelled_cleanly(app, done)


def test_after_the_lock_a_cancellation_is_refused_and_changes_nothing() -> None:
    app = new_app()
    operation = enrollment(app)
    check_all(app, operation.id)
    app.lock_prices(operation.id, fitting_quotes(app, operation.id))
    before = app.operation(operation.id)
    assert before.status is OperationStatus.SETTLING
    with pytest.raises(OperationNotCancellableError, match="settling"):
        app.cancel_operation(PLATFORM, uuid4(), operation.id)
    assert app.operation(operation.id).version == before.version


def test_an_ended_operation_cannot_be_cancelled() -> None:
    app = new_app()
    app.register_participants(PLATFORM, CODES)
    strategy = new_strategy(app)
    body = {"allocations": BLUE_CHIP, "participants": funded(CODES)}
    settled = run(app, strategy, OperationType.ENROLLMENT, body)
    with pytest.raises(OperationNotCancellableError, match="settled"):
        app.cancel_operation(PLATFORM, uuid4(), settled.id)


def test_a_cancellation_is_idempotent_and_platform_scoped() -> None:
    app = new_app()
    operation = enrollment(app)
    request_id = uuid4()
    first, created = app.cancel_operation(PLATFORM, request_id, operation.id)
    again, created_again = app.cancel_operation(PLATFORM, request_id, operation.id)
    assert created and not created_again and again.version == first.version
    other, created = app.cancel_operation(PLATFORM, uuid4(), operation.id)  # another request
    assert created and other.version == first.version  # nothing more recorded
    with pytest.raises(OperationNotFoundError):
        app.cancel_operation("platform-b", uuid4(), operation.id)
    with pytest.raises(OperationNotFoundError):
        app.cancel_operation(PLATFORM, uuid4(), uuid4())


def test_a_failed_operation_still_ends_failed_with_rejected_executions() -> None:
    """The release path is shared: a pricing failure is unchanged by cancellation."""
    app = new_app()
    operation = enrollment(app)
    check_all(app, operation.id)
    app.fail_operation(operation.id, OperationReason.PRICING_FAILED, "no quote")
    done = release_all(app, operation.id)
    assert done.status is OperationStatus.FAILED
    assert "cancelled" not in done.counts and done.counts["rejected"] == len(CODES)
    trader = app.find(ids.trader_id(operation.strategy_id, "C1"), Trader)
    assert trader is not None and trader.held_by is None
    assert Decimal(0) == sum((t.cash for t in [trader]), Decimal(0))
