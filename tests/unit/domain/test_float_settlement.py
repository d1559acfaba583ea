"""The float is written once per Operation at its end, never by each chunk's barrier."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError
from hypothesis import given
from hypothesis import strategies as st

from domain.audit import float_of
from domain.chunk import OperationChunk, chunk_id
from domain.float_account import FloatAccount, hold_key
from domain.money import ZERO
from domain.operation import Operation
from domain.services import Trading
from domain.statuses import OperationStatus, OperationType
from domain.strategy import Strategy
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    check_all,
    fail_and_release,
    funded,
    lock_and_fill,
    new_app,
    new_operation,
    new_strategy,
    request,
    run,
)

D = Decimal
CODES = [f"P{n}" for n in range(1, 8)]  # three chunks of at most three


def float_id() -> UUID:
    return FloatAccount.create_id(PLATFORM, "USD")


def float_events(app: Trading, after: int) -> list[Any]:
    return list(app.events.get(float_id(), gt=after))


def chunk_moves(app: Trading, operation: Operation) -> dict[str, tuple[Decimal, Decimal]]:
    """Each chunk's (debit, credit), as its own settlement recorded it."""
    moves = {}
    for index in range(operation.chunk_count):
        chunk = app.find(chunk_id(operation.id, index), OperationChunk)
        assert chunk is not None
        summary = chunk.summary
        moves[hold_key(operation.id, index)] = (D(summary["debit"]), D(summary["credit"]))
    return moves


def enrolled(app: Trading, amount: str = "1000.00") -> Strategy:
    strategy = new_strategy(app)
    app.register_participants(PLATFORM, CODES)
    body = {"allocations": BLUE_CHIP, "participants": funded(CODES, amount)}
    assert run(app, strategy, OperationType.ENROLLMENT, body).status is OperationStatus.SETTLED
    return strategy


def priced(app: Trading, strategy: Strategy, kind: OperationType, body: Any) -> Operation:
    operation = check_all(app, request(app, strategy, kind, body).id)
    assert operation.chunk_count == 3
    return lock_and_fill(app, operation.id)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (OperationType.TOP_UP, {"allocations": BLUE_CHIP, "participants": funded(CODES)}),
        (OperationType.LIQUIDATION, {"participants": CODES}),
    ],
)
def test_a_multi_chunk_operation_settles_the_float_in_one_write(
    kind: OperationType, body: Any
) -> None:
    app = new_app()
    strategy = enrolled(app)
    operation = priced(app, strategy, kind, body)
    before = app._float(PLATFORM, "USD")
    for index in range(operation.chunk_count):
        assert float_events(app, before.version) == []  # no chunk barrier touched the float
        app.settle_chunk(operation.id, index)
    operation = app.operation(operation.id)
    assert operation.status is OperationStatus.SETTLED
    (written,) = float_events(app, before.version)
    assert type(written) is FloatAccount.OperationSettled
    moves = chunk_moves(app, operation)
    assert written.debits == {k: debit for k, (debit, _) in moves.items()}
    assert written.credits == {k: credit for k, (_, credit) in moves.items()}
    assert any(debit or credit for debit, credit in moves.values())
    debits = sum((debit for debit, _ in moves.values()), ZERO)
    credits = sum((credit for _, credit in moves.values()), ZERO)
    assert (debits, credits) == (
        D(operation.float_moves["debit"]),
        D(operation.float_moves["credit"]),
    )
    after = app._float(PLATFORM, "USD")
    assert after.balance == before.balance - debits + credits
    assert after.holds == {}
    assert app.settle_chunk(operation.id, 2).replayed  # redelivered: nothing more written
    assert float_events(app, before.version) == [written]


def test_a_failed_operation_releases_all_its_holds_once() -> None:
    app = new_app()
    strategy = enrolled(app)
    body = {"allocations": BLUE_CHIP, "participants": funded(CODES)}
    operation = check_all(app, request(app, strategy, OperationType.TOP_UP, body).id)
    app.reserve_float(operation.id)
    reserved = app._float(PLATFORM, "USD")
    assert reserved.held == D("7000.00")
    operation = fail_and_release(app, operation.id)
    assert operation.status is OperationStatus.FAILED
    (written,) = float_events(app, reserved.version)
    assert type(written) is FloatAccount.OperationReleased
    assert written.keys == sorted(reserved.holds)
    after = app._float(PLATFORM, "USD")
    assert (after.balance, after.holds) == (reserved.balance, {})
    for index in range(operation.chunk_count):
        assert app.release_chunk(operation.id, index).replayed
    assert float_events(app, reserved.version) == [written]


class RacedOnTheFloat(Trading):
    """Another Operation writes the float while the last barrier is being written."""

    race = False

    def _float(self, platform_id: str, currency: str) -> FloatAccount:
        account = super()._float(platform_id, currency)
        if self.race:
            self.race = False
            self.deposit_float(platform_id, currency, D("1.00"), f"RACE-{uuid4().hex[:8]}")
        return account


def test_a_last_barrier_that_lost_the_race_is_rerun_and_settles_the_float_once() -> None:
    app = new_app(kind=RacedOnTheFloat)
    assert isinstance(app, RacedOnTheFloat)
    strategy = enrolled(app)
    body = {"allocations": BLUE_CHIP, "participants": funded(CODES)}
    operation = priced(app, strategy, OperationType.TOP_UP, body)
    app.settle_chunk(operation.id, 0)
    app.settle_chunk(operation.id, 1)
    before = app._float(PLATFORM, "USD")
    app.race = True
    with pytest.raises(IntegrityError):  # the float moved under the barrier: nothing saved
        app.settle_chunk(operation.id, 2)
    assert app.operation(operation.id).chunk_stage(2) == "checked"
    assert app.settle_chunk(operation.id, 2).replayed is False  # the retry does the barrier
    raced, written = float_events(app, before.version)
    assert (type(raced), type(written)) == (FloatAccount.Deposited, FloatAccount.OperationSettled)
    assert app.operation(operation.id).status is OperationStatus.SETTLED
    assert app._float(PLATFORM, "USD").balance == before.balance + D("1.00") - D("7000.00")


def test_an_old_history_of_per_chunk_settlements_replays_to_the_same_balance() -> None:
    """Float accounts written before the Operation-wide settlement hold one `Settled` or
    `Released` per chunk; they load as before, and equal the one-event settlement."""
    app = Trading()
    op, failed = uuid4(), uuid4()
    moves = {0: (D("40.00"), D(0)), 1: (D("9.99"), D("3.00")), 2: (D(0), D("12.50"))}
    old = FloatAccount(PLATFORM, "USD", 2)
    old.deposit(D("100.00"), "wire")
    old.hold(op, {0: D("50.00"), 1: D("10.00")})
    old.hold(failed, {0: D("5.00"), 1: D("5.00")})
    for index, (debit, credit) in moves.items():  # what each chunk's barrier recorded then
        old._settled(hold_key(op, index), debit, credit)
    for index in (0, 1):
        old._released(hold_key(failed, index))
    app.save(old)
    new = FloatAccount(PLATFORM, "EUR", 2)
    new.deposit(D("100.00"), "wire")
    new.hold(op, {0: D("50.00"), 1: D("10.00")})
    new.hold(failed, {0: D("5.00"), 1: D("5.00")})
    new.settle_operation(op, moves)
    new.release_operation(failed)
    app.save(new)
    replayed_old, replayed_new = (app.repository.get(a.id) for a in (old, new))
    assert replayed_old.balance == replayed_new.balance == D("100.00") - D("49.99") + D("15.50")
    assert replayed_old.holds == replayed_new.holds == {}
    assert [type(e).__name__ for e in app.events.get(old.id)][-5:] == ["Settled"] * 3 + [
        "Released"
    ] * 2
    for account in (old, new):  # and the audit reads both the same way
        events = list(app.events.get(account.id))
        assert float_of(events, op) == ({"debit": D("49.99"), "credit": D("15.50")}, ())
        assert float_of(events, failed) == ({"debit": ZERO, "credit": ZERO}, ())
        assert float_of(events[:3], op)[1] == (hold_key(op, 0), hold_key(op, 1))


def test_chunks_settled_by_the_old_per_chunk_barriers_are_not_paid_again() -> None:
    """An Operation half-settled before the upgrade: its first chunk's `ChunkSettled` carries
    no `float_deferred` (the float was settled with it), so the end settles only the rest."""
    operation = settling_operation(2)
    operation._chunk_settled(0, 1, 0, {}, D("10"), D(0))  # as the old barrier recorded it
    operation.record_chunk_settled(1, 1, 0, {}, D("7"), D(0))
    assert operation.status is OperationStatus.SETTLED
    assert operation.deferred_float_moves == {1: (D("7"), D(0))}
    assert operation.float_moves == {"debit": "17", "credit": "0"}


chunk_plans = st.lists(
    st.tuples(
        st.decimals(min_value=0, max_value=10_000, places=2),  # hold
        st.decimals(min_value=0, max_value=1, places=2),  # share of the hold debited
        st.decimals(min_value=0, max_value=10_000, places=2),  # credit
    ),
    min_size=1,
    max_size=12,
)


@given(
    initial=st.decimals(min_value=0, max_value=200_000, places=2),
    plans=chunk_plans,
    order=st.randoms(use_true_random=False),
)
def test_the_float_ends_at_its_balance_less_the_debits_plus_the_credits(
    initial: Decimal, plans: list[tuple[Decimal, Decimal, Decimal]], order: Any
) -> None:
    """Whatever the chunks and the order their barriers run in: one write at the end, the
    balance moved by exactly the chunks' debits and credits, never below what the
    reservation left free."""
    account = FloatAccount(PLATFORM, "USD", 2)
    if initial:
        account.deposit(initial, "wire")
    holds = {i: hold for i, (hold, _, _) in enumerate(plans)}
    if sum(holds.values(), ZERO) > initial:
        return  # the reservation refuses it whole: covered by the reservation's own tests
    operation = settling_operation(len(plans))
    account.hold(operation.id, holds)
    account.collect_events()
    barriers = list(enumerate(plans))
    order.shuffle(barriers)
    for index, (hold, share, credit) in barriers:
        debit = (hold * share).quantize(D("0.01"))
        operation.record_chunk_settled(index, 1, 0, {}, debit, credit)
    assert operation.status.terminal
    account.settle_operation(operation.id, operation.deferred_float_moves)
    debits = sum(((h * s).quantize(D("0.01")) for h, s, _ in plans), ZERO)
    credits = sum((c for _, _, c in plans), ZERO)
    moved = debits or credits or any(holds.values())
    assert len(account.collect_events()) == (1 if moved else 0)
    assert account.balance == initial - debits + credits
    assert account.balance >= initial - sum(holds.values(), ZERO) >= 0
    assert account.holds == {}


def settling_operation(chunks: int) -> Operation:
    """A top-up whose `chunks` chunks are checked, priced and ready to settle."""
    operation = new_operation(chunks)
    for index in range(chunks):
        operation.record_chunk_checked(index, 1, 0, 0, {"BTC": {"held": "0"}})
    operation.reserve_float({str(i): "0" for i in range(chunks)}, ZERO)
    operation.lock_prices({"BTC": {"price": "1"}}, {})
    return operation
