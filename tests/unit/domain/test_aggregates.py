from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from domain.catalogue import Instrument, InstrumentStatus
from domain.chunk import OperationChunk
from domain.eligibility import ParticipantStatus
from domain.errors import (
    AmountInvalidError,
    CurrencyUnsupportedError,
    FloatInsufficientError,
    HoldNotOwnedError,
    IllegalTransitionError,
    InvalidRequestError,
    TraderHeldError,
)
from domain.float_account import FloatAccount
from domain.legs import Leg
from domain.reference import Catalogue, Participant
from domain.statuses import (
    OperationReason,
    OperationStatus,
    OperationType,
    Side,
    TraderStatus,
)
from domain.trader import Trader
from tests.unit.domain.flows import new_operation

D = Decimal
FIRST_OP, SECOND_OP, EXECUTION = uuid4(), uuid4(), uuid4()


def new_trader() -> Trader:
    return Trader(
        strategy_id=uuid4(), platform_id="p", participant_code="ABC123", auto_rebalance=True
    )


def test_second_hold_is_refused_while_trader_is_held() -> None:
    trader = new_trader()
    trader.place_hold(FIRST_OP, EXECUTION, OperationType.TOP_UP)
    trader.place_hold(
        FIRST_OP, EXECUTION, OperationType.TOP_UP
    )  # the same operation again: a no-op
    with pytest.raises(TraderHeldError) as caught:
        trader.place_hold(SECOND_OP, uuid4(), OperationType.TOP_UP)
    assert caught.value.code == "concurrent_hold"
    assert [type(e) for e in trader.collect_events()] == [Trader.Opened, Trader.HoldPlaced]


def test_only_the_holding_operation_may_settle_or_release() -> None:
    trader = new_trader()
    trader.place_hold(FIRST_OP, EXECUTION, OperationType.TOP_UP)
    with pytest.raises(HoldNotOwnedError):
        trader.release_hold(SECOND_OP, "rejected", "pricing_failed")
    with pytest.raises(HoldNotOwnedError):
        trader.settle(SECOND_OP, OperationType.TOP_UP, (), {}, D(0), D(0))
    trader.release_hold(FIRST_OP, "rejected", "pricing_failed")
    assert trader.held_by is None


def test_enrollment_settlement_activates_the_trader_and_books_fills() -> None:
    trader = new_trader()
    trader.place_hold(FIRST_OP, EXECUTION, OperationType.TOP_UP)
    leg = Leg(Side.BUY, "BTC", D("0.001"), D("60.00"))
    trader.settle(
        FIRST_OP, OperationType.ENROLLMENT, (leg,), {"BTC": D("60000")}, D("100.00"), D(0), False
    )
    assert trader.status is TraderStatus.ACTIVE
    assert trader.positions == {"BTC": D("0.001")}
    assert trader.cash == D("40.00")
    assert trader.auto_rebalance is False
    assert trader.held_by is None
    assert trader.account_label == str(trader.strategy_id)


def test_settlement_that_would_go_negative_is_refused_before_any_change() -> None:
    trader = new_trader()
    trader.place_hold(FIRST_OP, EXECUTION, OperationType.TOP_UP)
    oversell = Leg(Side.SELL, "BTC", D("1"), D("60000.00"))
    with pytest.raises(IllegalTransitionError, match="negative"):
        trader.settle(
            FIRST_OP, OperationType.PARTIAL_SELL, (oversell,), {"BTC": D("60000")}, D(0), D(0)
        )
    assert trader.positions == {}
    assert trader.held_by == FIRST_OP


def test_liquidation_marks_the_trader_liquidated() -> None:
    trader = new_trader()
    trader.place_hold(FIRST_OP, EXECUTION, OperationType.TOP_UP)
    trader.settle(FIRST_OP, OperationType.ENROLLMENT, (), {}, D("5.00"), D(0))
    trader.place_hold(SECOND_OP, uuid4(), OperationType.TOP_UP)
    trader.settle(SECOND_OP, OperationType.LIQUIDATION, (), {}, D(0), D("5.00"))
    assert trader.status is TraderStatus.LIQUIDATED
    assert trader.cash == 0


def test_auto_rebalance_changes_only_once_enrolled_and_only_when_different() -> None:
    trader = new_trader()
    with pytest.raises(IllegalTransitionError):
        trader.change_auto_rebalance(False)
    trader.place_hold(FIRST_OP, EXECUTION, OperationType.TOP_UP)
    trader.settle(FIRST_OP, OperationType.ENROLLMENT, (), {}, D(0), D(0))
    trader.collect_events()
    trader.change_auto_rebalance(True)
    assert trader.collect_events() == []
    trader.change_auto_rebalance(False)
    assert [type(e) for e in trader.collect_events()] == [Trader.AutoRebalanceChanged]


def test_float_holds_are_bounded_by_the_available_balance() -> None:
    account = FloatAccount("p", "USD", 2)
    account.deposit(D("100.00"), "wire")
    account.hold(FIRST_OP, {0: D("50.00"), 1: D("10.00"), 2: D("0")})  # 2: nothing to hold
    assert [type(e).__name__ for e in account.collect_events()][-1] == "Reserved"  # one event
    account.hold(FIRST_OP, {0: D("60.00")})  # a chunk held already: a no-op
    assert account.pending_events == []
    assert account.available == D("40.00")
    with pytest.raises(FloatInsufficientError):
        account.hold(SECOND_OP, {0: D("20.00"), 1: D("20.01")})  # all or nothing
    assert account.available == D("40.00")
    with pytest.raises(HoldNotOwnedError):  # chunk 1 may not spend chunk 0's hold
        account.settle_operation(FIRST_OP, {0: (D("40.00"), D(0)), 1: (D("10.01"), D(0))})
    assert account.pending_events == []
    account.settle_operation(FIRST_OP, {0: (D("35.00"), D("10.00")), 1: (D("10.00"), D(0))})
    assert (account.balance, account.held) == (D("65.00"), D(0))
    account.hold(SECOND_OP, {0: D("5.00"), 1: D("6.00")})
    account.release_operation(SECOND_OP)
    account.release_operation(SECOND_OP)
    assert account.available == D("65.00")
    assert [type(e).__name__ for e in account.collect_events()] == [
        "OperationSettled",
        "Reserved",
        "OperationReleased",
    ]


@pytest.mark.parametrize("amount", ["0", "-1", "1.001"])
def test_float_deposits_must_be_positive_whole_minor_units(amount: str) -> None:
    with pytest.raises(AmountInvalidError):
        FloatAccount("p", "USD", 2).deposit(D(amount), "wire")


def test_catalogue_records_only_real_changes_and_validates_listings() -> None:
    catalogue = Catalogue()
    btc = Instrument("BTC", "USD", 8, D("1.00"))
    catalogue.list_instrument(btc)
    catalogue.list_instrument(btc)
    catalogue.list_instrument(Instrument("BTC", "USD", 8, D("1.00"), InstrumentStatus.HALTED))
    assert len(catalogue.collect_events()) == 3
    assert not catalogue.view().get("BTC", "USD").tradable
    with pytest.raises(CurrencyUnsupportedError):
        catalogue.list_instrument(Instrument("BTC", "XYZ", 8, D(1)))
    with pytest.raises(InvalidRequestError):
        catalogue.list_instrument(Instrument("BTC", "USD", 19, D(1)))
    with pytest.raises(InvalidRequestError):
        catalogue.list_instrument(Instrument("BTC", "USD", 8, D(-1)))


def test_participant_eligibility_changes_are_recorded_once() -> None:
    participant = Participant("p", "ABC", "active", [])
    participant.update(ParticipantStatus.ACTIVE, [])
    participant.update(ParticipantStatus.SUSPENDED, ["SOL"])
    assert len(participant.collect_events()) == 2
    assert not participant.profile().may_trade
    assert participant.profile().restricted_assets == frozenset({"SOL"})


def test_pricing_waits_for_every_chunk_to_be_checked() -> None:
    operation = new_operation()
    operation.record_chunk_checked(0, 2, 0, 0, {"BTC": {"buy": "0.1", "sell": "0"}})
    assert operation.status is OperationStatus.VALIDATING
    with pytest.raises(IllegalTransitionError):
        operation.record_chunk_checked(0, 2, 0, 0, {})
    operation.record_chunk_checked(1, 1, 1, 0, {"BTC": {"buy": "0.2"}})
    assert operation.status is OperationStatus.PRICING
    assert operation.flows == {"BTC": {"buy": "0.3", "sell": "0"}}


def test_operation_refuses_edges_the_lifecycle_does_not_have() -> None:
    operation = new_operation(1)
    with pytest.raises(IllegalTransitionError):
        operation.lock_prices({}, {})
    with pytest.raises(IllegalTransitionError):
        operation.fail(OperationReason.PRICING_FAILED, "too early")
    with pytest.raises(IllegalTransitionError):
        operation.record_chunk_released(0, 1)
    operation.record_chunk_checked(0, 1, 0, 0, {"BTC": {"buy": "1"}})
    with pytest.raises(IllegalTransitionError, match="has not reserved its float"):
        operation.lock_prices({"BTC": {"price": "1"}}, {})
    operation.reserve_float({"0": "100"}, D(1))
    with pytest.raises(IllegalTransitionError, match="no locked price for BTC"):
        operation.lock_prices({}, {})
    with pytest.raises(IllegalTransitionError):
        operation.record_chunk_settled(0, 1, 0, {}, D(0), D(0))
    operation.lock_prices({"BTC": {"price": "1"}}, {"BTC": {"side": "buy", "quantity": "1"}})
    with pytest.raises(IllegalTransitionError):
        operation.record_fill("ETH", {})
    with pytest.raises(IllegalTransitionError, match="cannot settle chunks yet"):
        operation.record_chunk_settled(0, 1, 0, {}, D(0), D(0))
    filled = {"side": "buy", "quantity": "1", "price": "1"}
    operation.record_fill("BTC", filled)
    operation.record_fill("BTC", {**filled, "quantity": "2"})  # a redelivered fill is ignored
    assert operation.fills["BTC"] == filled
    assert [type(e).__name__ for e in operation.collect_events()][-2:] == [
        "BlockFilled",
        "FillsCompleted",
    ]
    operation.record_chunk_settled(0, 1, 0, {"BTC": {"bought": "1"}}, D(1), D(0))
    assert operation.status is OperationStatus.SETTLED
    with pytest.raises(IllegalTransitionError):
        operation.record_chunk_settled(0, 1, 0, {}, D(0), D(0))
    with pytest.raises(IllegalTransitionError):
        operation.fail(OperationReason.EXECUTION_FAILED, "too late")


@pytest.mark.parametrize(
    "fill",
    [
        {"side": "buy", "quantity": "0.5", "price": "1"},  # a partial fill
        {"side": "buy", "quantity": "1", "price": "1.01"},  # another price
        {"side": "sell", "quantity": "1", "price": "1"},  # the other side
    ],
)
def test_a_fill_that_is_not_the_order_at_the_locked_price_fails_the_operation(
    fill: dict[str, str],
) -> None:
    """Traders trade their allotment at the locked price or not at all: the fill is kept on
    record (the house carries it) and the Operation fails; nobody settles a share of it."""
    operation = new_operation(1)
    operation.record_chunk_checked(0, 1, 0, 0, {"BTC": {"held": "0"}})
    operation.reserve_float({"0": "100"}, D(1))
    operation.lock_prices({"BTC": {"price": "1"}}, {"BTC": {"side": "buy", "quantity": "1"}})
    operation.record_fill("BTC", fill)
    assert operation.fills["BTC"] == fill
    assert (operation.failure, operation.ready_to_settle) == ("execution_failed", False)
    assert "BTC" in operation.failure_detail
    operation.record_chunk_released(0, 1)
    assert operation.status is OperationStatus.FAILED
    signed = D(fill["quantity"]) * (1 if fill["side"] == "buy" else -1)
    assert operation.residual == {"BTC": str(-signed)}  # the house keeps what was filled


def test_a_failing_operation_ends_failed_once_every_chunk_is_released() -> None:
    operation = new_operation(2)
    operation.record_chunk_checked(0, 1, 0, 0, {"BTC": {"buy": "1"}})
    operation.record_chunk_checked(1, 1, 0, 0, {"BTC": {"buy": "1"}})
    operation.fail(OperationReason.PRICING_FAILED, "quote expired")
    operation.fail(OperationReason.PRICING_FAILED, "again")
    with pytest.raises(IllegalTransitionError, match="failing"):
        operation.lock_prices({"BTC": {"price": "1"}}, {})
    operation.record_chunk_released(0, 1)
    assert operation.status is OperationStatus.PRICING
    operation.record_chunk_released(1, 1)
    assert (operation.status, operation.status_reason) == (
        OperationStatus.FAILED,
        OperationReason.PRICING_FAILED,
    )
    assert operation.counts["rejected"] == 2


def test_chunk_stages_move_forward_only() -> None:
    chunk = OperationChunk(uuid4(), 0, [{"participant_code": "A", "amount": "1"}])
    with pytest.raises(IllegalTransitionError):
        chunk.record_settlement([], {})
    chunk.record_check([{"participant_code": "A", "outcome": "approved", "reasons": ""}], {})
    assert chunk.approved_codes == ["A"]
    chunk.record_release("pricing_failed")
    assert chunk.decisions["A"]["outcome"] == "rejected"
    assert chunk.summary == {"released": 1}
    with pytest.raises(IllegalTransitionError):
        chunk.record_check([], {})


def test_an_operation_that_settled_a_chunk_can_no_longer_fail() -> None:
    operation = new_operation(2)
    for index in (0, 1):
        operation.record_chunk_checked(index, 1, 0, 0, {"BTC": {"buy": "1"}})
    operation.reserve_float({"0": "1", "1": "1"}, D(2))
    operation.lock_prices({"BTC": {"price": "1"}}, {})
    operation.record_chunk_settled(0, 1, 0, {}, D(0), D(0))
    with pytest.raises(IllegalTransitionError, match="filled and settling"):
        operation.fail(OperationReason.EXECUTION_FAILED, "venue down")
    with pytest.raises(IllegalTransitionError):
        operation.record_chunk_released(1, 1)
    operation.record_chunk_settled(1, 0, 1, {}, D(0), D(0))
    assert (operation.status, operation.status_reason) == (
        OperationStatus.SETTLED,
        OperationReason.PARTIAL_SUCCESS,
    )


def test_a_failing_operation_cannot_release_a_chunk_twice() -> None:
    operation = new_operation(2)
    for index in (0, 1):
        operation.record_chunk_checked(index, 1, 0, 0, {"BTC": {"buy": "1"}})
    operation.fail(OperationReason.PRICING_FAILED, "no quote")
    operation.record_chunk_released(0, 1)
    with pytest.raises(IllegalTransitionError):
        operation.record_chunk_released(0, 1)
