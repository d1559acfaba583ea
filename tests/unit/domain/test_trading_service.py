from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import RecordConflictError

from domain import ids
from domain.catalogue import Instrument, InstrumentStatus
from domain.chunk import OperationChunk, chunk_id
from domain.eligibility import ParticipantStatus
from domain.errors import (
    AllocationInvalidError,
    CurrencyUnsupportedError,
    IdempotencyConflictError,
    IllegalTransitionError,
    InvalidRequestError,
    OperationNotFoundError,
    StrategyNotFoundError,
    TraderNotFoundError,
)
from domain.float_account import FloatAccount
from domain.operation import Operation
from domain.pricing import BlockFill, LockedQuote
from domain.services import Trading
from domain.statuses import (
    OperationReason,
    OperationStatus,
    OperationType,
    Side,
    TraderStatus,
)
from domain.strategy import Strategy
from domain.trader import Trader
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    PRICES,
    check_all,
    fail_and_release,
    fitting_quotes,
    funded,
    lock_and_fill,
    new_strategy,
    request,
    run,
    settle_all,
)

D = Decimal
CODES = ["P1", "P2", "P3", "P4", "P5"]


def trader_or_none(app: Trading, strategy: Strategy, code: str) -> Trader | None:
    found = app.find(ids.trader_id(strategy.id, code), Trader)
    return found if found is not None and found.status is not TraderStatus.PENDING else None


def trader(app: Trading, strategy: Strategy, code: str) -> Trader:
    found = app.find(ids.trader_id(strategy.id, code), Trader)
    assert found is not None
    return found


def enroll(app: Trading, strategy: Strategy, codes: list[str] = CODES) -> None:
    app.register_participants(PLATFORM, codes)
    body = {"allocations": BLUE_CHIP, "participants": funded(codes)}
    assert run(app, strategy, OperationType.ENROLLMENT, body).status is OperationStatus.SETTLED


def test_the_enroll_to_liquidate_story(app: Trading, strategy: Strategy) -> None:
    enroll(app, strategy)
    p1 = trader(app, strategy, "P1")
    assert p1.status is TraderStatus.ACTIVE
    assert p1.positions == {"BTC": D("0.00833333"), "ETH": D("0.1"), "SOL": D("1.33333333")}
    assert app._float(PLATFORM, "USD").balance == D("995000.00")

    top_up = {"allocations": BLUE_CHIP, "participants": funded(["P1"], "500.00")}
    run(app, strategy, OperationType.TOP_UP, top_up)
    assert trader(app, strategy, "P1").positions["ETH"] == D("0.15")

    sell = {"allocations": BLUE_CHIP, "participants": funded(["P2"], "100.00")}
    run(app, strategy, OperationType.PARTIAL_SELL, sell)
    assert trader(app, strategy, "P2").positions["BTC"] == D("0.00749999")

    new_weights = [
        {"underlying_currency": "ETH", "weight": "0.5"},
        {"underlying_currency": "SOL", "weight": "0.5"},
    ]
    operation = run(app, strategy, OperationType.REBALANCE, {"allocations": new_weights})
    assert operation.status is OperationStatus.SETTLED
    assert "BTC" not in trader(app, strategy, "P3").positions

    operation = run(app, strategy, OperationType.LIQUIDATION, {"participants": ["P4", "P5"]})
    p4 = trader(app, strategy, "P4")
    assert (p4.status, p4.positions, p4.cash) == (TraderStatus.LIQUIDATED, {}, D(0))
    assert operation.float_moves["credit"] != "0"


def test_ineligible_participants_are_rejected_and_the_rest_settle(
    app: Trading, strategy: Strategy
) -> None:
    app.register_participants(PLATFORM, ["OK1", "OK2"])
    app.register_participants(PLATFORM, ["SUS"], ParticipantStatus.SUSPENDED)
    body = {"allocations": BLUE_CHIP, "participants": funded(["OK1", "SUS", "UNKNOWN", "OK2"])}
    operation = run(app, strategy, OperationType.ENROLLMENT, body)
    assert (operation.status, operation.status_reason) == (
        OperationStatus.SETTLED,
        OperationReason.PARTIAL_SUCCESS,
    )
    assert operation.counts == {"approved": 2, "rejected": 2, "skipped": 0, "settled": 2}
    chunk = app.find(chunk_id(operation.id, 0), OperationChunk)
    assert chunk is not None
    assert chunk.decisions["SUS"]["reasons"] == "participant_ineligible"
    assert chunk.decisions["SUS"]["trader_id"] == ""
    assert app.find(ids.trader_id(strategy.id, "SUS"), Trader) is None


def test_everyone_rejected_fails_the_operation(app: Trading, strategy: Strategy) -> None:
    body = {"allocations": BLUE_CHIP, "participants": funded(["NOBODY"])}
    operation = run(app, strategy, OperationType.ENROLLMENT, body)
    assert (operation.status, operation.status_reason) == (
        OperationStatus.FAILED,
        OperationReason.ALL_REJECTED,
    )


def test_everyone_dust_skips_the_operation(app: Trading, strategy: Strategy) -> None:
    app.register_participants(PLATFORM, ["TINY"])
    body = {"allocations": BLUE_CHIP, "participants": funded(["TINY"], "0.50")}
    operation = run(app, strategy, OperationType.ENROLLMENT, body)
    assert (operation.status, operation.status_reason) == (
        OperationStatus.SKIPPED,
        OperationReason.ALL_SKIPPED,
    )


def test_rejected_and_skipped_with_nothing_settled_is_a_mixed_outcome(
    app: Trading, strategy: Strategy
) -> None:
    """§11.14: mixed outcomes end settled with partial_success, even when none traded."""
    app.register_participants(PLATFORM, ["TINY"])
    body = {
        "allocations": BLUE_CHIP,
        "participants": [*funded(["TINY"], "0.50"), *funded(["NOBODY"])],
    }
    operation = run(app, strategy, OperationType.ENROLLMENT, body)
    assert (operation.status, operation.status_reason) == (
        OperationStatus.SETTLED,
        OperationReason.PARTIAL_SUCCESS,
    )
    assert (operation.counts["rejected"], operation.counts["skipped"]) == (1, 1)


def test_rebalance_with_nobody_in_scope_fails_at_once(app: Trading, strategy: Strategy) -> None:
    """§3.1: an Operation that ended with no Executions at all is failed, `no_executions`."""
    operation = request(app, strategy, OperationType.REBALANCE, {"allocations": BLUE_CHIP})
    assert (operation.status, operation.status_reason) == (
        OperationStatus.FAILED,
        OperationReason.NO_EXECUTIONS,
    )


def test_a_trader_on_target_at_the_locked_price_is_skipped_as_dust(
    app: Trading, strategy: Strategy
) -> None:
    enroll(app, strategy, ["P1"])
    moved = {**PRICES, "BTC": D("80000.00")}  # indicatively BTC is overweight...
    body = {"allocations": BLUE_CHIP}
    operation = check_all(app, request(app, strategy, OperationType.REBALANCE, body).id, moved)
    assert operation.status is OperationStatus.PRICING
    with pytest.raises(IllegalTransitionError, match="no locked price"):
        app.lock_prices(operation.id, {})
    lock_and_fill(app, operation.id, PRICES)  # ...but locked back where it is on target
    operation = settle_all(app, operation.id)
    assert (operation.status, operation.status_reason) == (
        OperationStatus.SKIPPED,
        OperationReason.ALL_SKIPPED,
    )
    assert trader(app, strategy, "P1").held_by is None


def test_pricing_failure_releases_every_hold_and_changes_no_position(
    app: Trading, strategy: Strategy
) -> None:
    enroll(app, strategy)
    before = {c: (trader(app, strategy, c).positions, trader(app, strategy, c).cash) for c in CODES}
    operation = check_all(
        app,
        request(
            app,
            strategy,
            OperationType.TOP_UP,
            {"allocations": BLUE_CHIP, "participants": funded(CODES)},
        ).id,
    )
    assert app._float(PLATFORM, "USD").held == 0  # the check reserves nothing...
    app.reserve_float(operation.id)
    assert app._float(PLATFORM, "USD").held == D("5000.00")  # ...pricing does, in one go
    operation = fail_and_release(app, operation.id)
    assert (operation.status, operation.status_reason) == (
        OperationStatus.FAILED,
        OperationReason.PRICING_FAILED,
    )
    assert app._float(PLATFORM, "USD").held == 0
    for code in CODES:
        p = trader(app, strategy, code)
        assert (p.positions, p.cash, p.held_by) == (*before[code], None)
    assert (
        app.fail_operation(operation.id, OperationReason.PRICING_FAILED, "late").status
        is OperationStatus.FAILED
    )
    assert app.release_chunk(operation.id, 0).replayed


def test_a_trader_held_by_one_operation_is_rejected_by_another(
    app: Trading, strategy: Strategy
) -> None:
    enroll(app, strategy, ["P1", "P2"])
    first = check_all(
        app,
        request(
            app,
            strategy,
            OperationType.TOP_UP,
            {"allocations": BLUE_CHIP, "participants": funded(["P1"])},
        ).id,
    )
    second = run(
        app,
        strategy,
        OperationType.REBALANCE,
        {"allocations": BLUE_CHIP, "participants": ["P1", "P2"]},
    )
    chunk = app.find(chunk_id(second.id, 0), OperationChunk)
    assert chunk is not None
    assert chunk.decisions["P1"]["reasons"] == "concurrent_hold"
    assert second.counts["rejected"] == 1
    lock_and_fill(app, first.id)
    assert settle_all(app, first.id).status is OperationStatus.SETTLED


def test_stages_are_idempotent(app: Trading, strategy: Strategy) -> None:
    app.register_participants(PLATFORM, ["P1"])
    operation = request(
        app,
        strategy,
        OperationType.ENROLLMENT,
        {"allocations": BLUE_CHIP, "participants": funded(["P1"])},
    )
    app.record_indicative_prices(operation.id, PRICES)
    app.record_indicative_prices(operation.id, {"BTC": D(1)})  # the first set stays
    app.check_chunk(operation.id, 0)
    assert app.check_chunk(operation.id, 0).replayed
    assert app.operation(operation.id).prices_for_check == PRICES
    app.reserve_float(operation.id)
    reserved = app.operation(operation.id).version
    app.reserve_float(operation.id)  # redelivered: reserves nothing more
    assert app.operation(operation.id).version == reserved
    lock_and_fill(app, operation.id)
    version = app.operation(operation.id).version
    lock_and_fill(app, operation.id)  # lock and fills redelivered
    assert app.operation(operation.id).version == version
    app.settle_chunk(operation.id, 0)
    assert app.settle_chunk(operation.id, 0).replayed
    assert trader(app, strategy, "P1").positions["ETH"] == D("0.1")


def test_a_fill_at_another_price_than_the_locked_one_fails_the_operation(
    app: Trading, strategy: Strategy
) -> None:
    app.register_participants(PLATFORM, ["P1"])
    operation = check_all(
        app,
        request(
            app,
            strategy,
            OperationType.ENROLLMENT,
            {"allocations": BLUE_CHIP, "participants": funded(["P1"])},
        ).id,
    )
    app.lock_prices(operation.id, fitting_quotes(app, operation.id))
    btc = app.operation(operation.id).block_orders["BTC"]
    filled = app.record_fill(
        operation.id, BlockFill("BTC", Side.BUY, D(btc["quantity"]), D(1), "x")
    )
    assert filled.failure == "execution_failed" and "locked price" in filled.failure_detail
    operation = fail_and_release(app, operation.id)
    assert operation.status is OperationStatus.FAILED
    assert operation.residual == {"BTC": str(-D(btc["quantity"]))}  # the house keeps it
    assert trader_or_none(app, strategy, "P1") is None  # never enrolled: nobody traded


def test_replayed_requests_return_the_original_and_reused_ids_conflict(app: Trading) -> None:
    request_id = uuid4()
    strategy, created = app.create_strategy(
        PLATFORM, request_id, {"quoted_currency": "USD", "metadata": {"a": 1}}
    )
    again, created_again = app.create_strategy(
        PLATFORM, request_id, {"metadata": {"a": 1}, "quoted_currency": "USD"}
    )
    assert (created, created_again, again.id, again.created_on) == (
        True,
        False,
        strategy.id,
        strategy.created_on,
    )
    with pytest.raises(IdempotencyConflictError):
        app.create_strategy(PLATFORM, request_id, {"quoted_currency": "EUR"})
    other, _ = app.create_strategy("platform-b", request_id, {"quoted_currency": "USD"})
    assert other.id != strategy.id

    body = {"allocations": BLUE_CHIP, "participants": funded(["P1"])}
    op_request = uuid4()
    operation, _ = app.request_operation(
        PLATFORM, strategy.id, op_request, OperationType.ENROLLMENT, body
    )
    replay, created = app.request_operation(
        PLATFORM, strategy.id, op_request, OperationType.ENROLLMENT, body
    )
    assert (replay.id, created) == (operation.id, False)
    with pytest.raises(IdempotencyConflictError):
        app.request_operation(PLATFORM, strategy.id, op_request, OperationType.TOP_UP, body)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, InvalidRequestError),
        ({"quoted_currency": ""}, InvalidRequestError),
        ({"quoted_currency": "XYZ"}, CurrencyUnsupportedError),
        ({"quoted_currency": "USD", "metadata": [1]}, InvalidRequestError),
        # What PostgreSQL's jsonb refuses, or pydantic cannot serialise back:
        ({"quoted_currency": "USD", "metadata": {"k": ["\x00"]}}, InvalidRequestError),
        ({"quoted_currency": "USD", "metadata": {"\x00": 1}}, InvalidRequestError),
        ({"quoted_currency": "USD", "metadata": {"k": float("nan")}}, InvalidRequestError),
        ({"quoted_currency": "USD", "metadata": {"k": {"l": float("inf")}}}, InvalidRequestError),
        (
            {"quoted_currency": "USD", "metadata": {"k": json.loads("[" * 40 + "]" * 40)}},
            InvalidRequestError,
        ),
    ],
)
def test_bad_strategy_requests_are_refused(
    app: Trading, body: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        app.create_strategy(PLATFORM, uuid4(), body)


def test_bad_operation_requests_write_nothing(app: Trading, strategy: Strategy) -> None:
    before = app.recorder.max_notification_id()
    with pytest.raises(AllocationInvalidError):
        app.request_operation(
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.ENROLLMENT,
            {"allocations": [], "participants": funded(["A"])},
        )
    with pytest.raises(StrategyNotFoundError):
        app.request_operation(
            "platform-b",
            strategy.id,
            uuid4(),
            OperationType.ENROLLMENT,
            {"allocations": BLUE_CHIP, "participants": funded(["A"])},
        )
    with pytest.raises(InvalidRequestError, match="participants are required"):
        app.request_operation(PLATFORM, strategy.id, uuid4(), OperationType.LIQUIDATION, {})
    with pytest.raises(InvalidRequestError, match="not both"):
        app.request_operation(
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.LIQUIDATION,
            {"all": True, "participants": ["A"]},
        )
    for tolerance in (0.1, "abc", "1.5"):
        with pytest.raises(InvalidRequestError):
            app.request_operation(
                PLATFORM,
                strategy.id,
                uuid4(),
                OperationType.REBALANCE,
                {"allocations": BLUE_CHIP, "participants": ["A"], "drift_tolerance": tolerance},
            )
    assert app.recorder.max_notification_id() == before


def test_rebalance_parameters_and_liquidate_all_are_recorded(
    app: Trading, strategy: Strategy
) -> None:
    operation = request(
        app,
        strategy,
        OperationType.REBALANCE,
        {"allocations": BLUE_CHIP, "drift_tolerance": "0.05", "participants": ["B", "A"]},
    )
    assert operation.parameters == {"drift_tolerance": "0.05"}
    assert operation.participant_count == 2
    liquidation = request(app, strategy, OperationType.LIQUIDATION, {"all": True})
    assert liquidation.parameters == {"all": "true"}


def test_update_trader_needs_an_enrolled_trader_of_the_platform(
    app: Trading, strategy: Strategy
) -> None:
    enroll(app, strategy, ["P1"])
    p1 = trader(app, strategy, "P1")
    assert app.update_trader(PLATFORM, uuid4(), p1.id, False)[0].auto_rebalance is False
    with pytest.raises(TraderNotFoundError):
        app.update_trader("platform-b", uuid4(), p1.id, True)
    with pytest.raises(OperationNotFoundError):
        app.operation(uuid4())
    with pytest.raises(IllegalTransitionError):
        app.check_chunk(
            app.operation(
                next(
                    iter(
                        [
                            request(
                                app,
                                strategy,
                                OperationType.REBALANCE,
                                {"allocations": BLUE_CHIP, "participants": ["P1"]},
                            ).id
                        ]
                    )
                )
            ).id,
            9,
        )


def test_reference_data_is_managed_through_the_service() -> None:
    app = Trading(chunk_size=2)
    assert app.catalogue().find("BTC", "USD") is None
    app.ensure_default_catalogue()
    app.ensure_default_catalogue()
    app.list_instruments([Instrument("BTC", "USD", 8, D("1.00"), InstrumentStatus.HALTED)])
    assert not app.catalogue().get("BTC", "USD").tradable
    assert app.register_participants(PLATFORM, ["A", "B", "A"]) == 2
    assert app.register_participants(PLATFORM, ["A"]) == 0
    with pytest.raises(ValueError, match="chunk_size"):
        Trading(chunk_size=0)


class SnapshotEveryOtherEvent(Trading):
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Trader: 2,
        Operation: 2,
        OperationChunk: 2,
        FloatAccount: 2,
    }


def replayed(app: Trading, aggregate_id: UUID) -> Any:
    """Rebuild an aggregate from its stored events alone, as an auditor would."""
    state = None
    for stored in app.events.get(aggregate_id):
        state = stored.mutate(state)  # type: ignore[attr-defined]
    return state


def test_replaying_events_rebuilds_what_the_repository_and_snapshots_give() -> None:
    app = SnapshotEveryOtherEvent(chunk_size=2)
    app.ensure_default_catalogue()
    app.deposit_float(PLATFORM, "USD", D("100000.00"), "wire")
    strategy = new_strategy(app)
    enroll(app, strategy)
    run(
        app,
        strategy,
        OperationType.TOP_UP,
        {"allocations": BLUE_CHIP, "participants": funded(CODES)},
    )
    assert app.snapshots is not None
    for code in CODES:
        live = trader(app, strategy, code)
        assert list(app.snapshots.get(live.id))  # loading went through a snapshot
        assert vars(replayed(app, live.id)) == vars(live)
    # Operations and chunks too: a stage must behave the same on a snapshot-loaded aggregate
    operation = run(
        app,
        strategy,
        OperationType.TOP_UP,
        {"allocations": BLUE_CHIP, "participants": funded(CODES)},
    )
    assert operation.status is OperationStatus.SETTLED
    for aggregate_id in (operation.id, chunk_id(operation.id, 0), app._float(PLATFORM, "USD").id):
        assert list(app.snapshots.get(aggregate_id))
        assert vars(replayed(app, aggregate_id)) == vars(app.repository.get(aggregate_id))


def test_block_orders_follow_the_locked_price_not_the_indicative_one(
    app: Trading, strategy: Strategy
) -> None:
    app.register_participants(PLATFORM, CODES)
    body = {"allocations": BLUE_CHIP, "participants": funded(CODES, "1000.00")}
    operation = check_all(app, request(app, strategy, OperationType.ENROLLMENT, body).id)
    moved = {asset: price * D("1.10") for asset, price in PRICES.items()}  # +10% before the lock
    operation = settle_all(app, lock_and_fill(app, operation.id, moved).id)
    btc = operation.block_orders["BTC"]
    each = (D("500.00") / moved["BTC"]).quantize(D("0.00000001"), "ROUND_DOWN")
    assert (btc["side"], D(btc["quantity"])) == ("buy", each * len(CODES))  # the Traders' own
    assert D(operation.totals["BTC"]["bought"]) == D(btc["quantity"])
    assert operation.residual == {}


def test_a_rebalance_block_nets_buyers_against_sellers(app: Trading, strategy: Strategy) -> None:
    enroll(app, strategy)
    target = [
        {"underlying_currency": "BTC", "weight": "0.20"},
        {"underlying_currency": "ETH", "weight": "0.80"},
    ]
    operation = run(app, strategy, OperationType.REBALANCE, {"allocations": target})
    orders = operation.block_orders
    assert (orders["BTC"]["side"], orders["ETH"]["side"], orders["SOL"]["side"]) == (
        "sell",
        "buy",
        "sell",
    )
    for asset, moves in operation.totals.items():
        net = D(moves.get("bought", "0")) - D(moves.get("sold", "0"))
        fill = operation.fills[asset]
        filled = D(fill["quantity"]) * (1 if fill["side"] == "buy" else -1)
        assert net - filled == D(operation.residual.get(asset, "0"))
        # each Trader rounds its quantity (a unit) and its fiat (a cent per leg it trades)
        per_trader = D("0.00000001") + D("0.01") * 3 / PRICES[asset]
        assert abs(net - filled) <= per_trader * len(CODES)


def test_a_partial_sell_and_a_liquidation_size_their_blocks_from_worth_and_holdings(
    app: Trading, strategy: Strategy
) -> None:
    enroll(app, strategy)
    sell = {"allocations": BLUE_CHIP, "participants": funded(CODES[:2], "100.00")}
    sale = run(app, strategy, OperationType.PARTIAL_SELL, sell)
    each = (D("50.00") / PRICES["BTC"]).quantize(D("0.00000001"), "ROUND_CEILING")
    assert D(sale.block_orders["BTC"]["quantity"]) == 2 * each  # each Trader's own, rounded up
    assert sale.residual == {} and sale.float_moves["credit"] == "200.00"  # exactly as asked
    held = trader(app, strategy, "P5").positions
    exit_ = run(app, strategy, OperationType.LIQUIDATION, {"participants": ["P5"]})
    assert {a: D(o["quantity"]) for a, o in exit_.block_orders.items()} == held
    assert exit_.residual == {}


def test_a_zero_or_negative_locked_price_is_refused(app: Trading, strategy: Strategy) -> None:
    app.register_participants(PLATFORM, ["P1"])
    body = {"allocations": BLUE_CHIP, "participants": funded(["P1"])}
    operation = check_all(app, request(app, strategy, OperationType.ENROLLMENT, body).id)
    for bad in (D(0), D(-5)):
        quotes = {a: LockedQuote(a, bad, "q", "t") for a in app.assets_to_price(operation.id)}
        with pytest.raises(IllegalTransitionError, match="positive"):
            app.lock_prices(operation.id, quotes)
    assert app.operation(operation.id).status is OperationStatus.PRICING


def test_an_unpriced_or_zero_priced_asset_excludes_whoever_needs_it(
    app: Trading, strategy: Strategy
) -> None:
    app.register_participants(PLATFORM, ["P1"])
    body = {"allocations": BLUE_CHIP, "participants": funded(["P1"])}
    operation = check_all(
        app, request(app, strategy, OperationType.ENROLLMENT, body).id, {**PRICES, "SOL": D(0)}
    )
    assert (operation.status, operation.status_reason) == (
        OperationStatus.FAILED,
        OperationReason.ALL_REJECTED,
    )


def test_fills_made_before_an_execution_failure_are_recorded_as_the_house_residual(
    app: Trading, strategy: Strategy
) -> None:
    app.register_participants(PLATFORM, ["P1"])
    body = {"allocations": BLUE_CHIP, "participants": funded(["P1"])}
    operation = check_all(app, request(app, strategy, OperationType.ENROLLMENT, body).id)
    operation = app.lock_prices(operation.id, fitting_quotes(app, operation.id))
    btc = operation.block_orders["BTC"]
    app.record_fill(
        operation.id, BlockFill("BTC", Side.BUY, D(btc["quantity"]), PRICES["BTC"], "f")
    )
    operation = fail_and_release(app, operation.id)
    assert operation.status is OperationStatus.FAILED
    assert operation.residual == {"BTC": str(-D(btc["quantity"]))}


def test_a_scope_naming_nobody_sees_every_write_already_made(
    app: Trading, strategy: Strategy
) -> None:
    """The roster is written with the Traders' events: a change acknowledged a moment ago
    (auto_rebalance off, an enrollment settled, a liquidation) is in the very next scope."""
    enroll(app, strategy, ["P1", "P2", "P3"])
    assert app.scope(strategy.id, auto_rebalance_only=True) == ["P1", "P2", "P3"]
    app.update_trader(PLATFORM, uuid4(), ids.trader_id(strategy.id, "P2"), False)
    assert app.scope(strategy.id, auto_rebalance_only=True) == ["P1", "P3"]
    assert app.scope(strategy.id, auto_rebalance_only=False) == ["P1", "P2", "P3"]
    rebalance = request(app, strategy, OperationType.REBALANCE, {"allocations": BLUE_CHIP})
    assert rebalance.participant_count == 2
    run(app, strategy, OperationType.LIQUIDATION, {"participants": ["P3"]})
    assert app.scope(strategy.id, auto_rebalance_only=False) == ["P1", "P2"]
    app.register_participants(PLATFORM, ["P4"])
    pending = request(
        app,
        strategy,
        OperationType.ENROLLMENT,
        {"allocations": BLUE_CHIP, "participants": funded(["P4"])},
    )
    check_all(app, pending.id)  # P4's Trader exists, held, but not enrolled yet
    assert app.scope(strategy.id, auto_rebalance_only=False) == ["P1", "P2"]
    other = new_strategy(app)
    assert app.scope(other.id, auto_rebalance_only=False) == []


def test_a_request_id_belongs_to_one_request_of_the_platform_whatever_its_kind(
    app: Trading, strategy: Strategy
) -> None:
    """§7.1/§11.17: reused with another request, of any kind, an id is a 409; the same request
    again is a replay that changes nothing; another platform has ids of its own."""
    enroll(app, strategy, ["P1"])
    p1 = trader(app, strategy, "P1")
    reused = uuid4()
    made, created = app.create_strategy(PLATFORM, reused, {"quoted_currency": "USD"})
    assert created
    before = app.recorder.max_notification_id()
    enrollment = {"allocations": BLUE_CHIP, "participants": funded(["P2"])}
    with pytest.raises(IdempotencyConflictError, match="create_strategy"):
        app.request_operation(PLATFORM, strategy.id, reused, OperationType.ENROLLMENT, enrollment)
    with pytest.raises(IdempotencyConflictError):
        app.update_trader(PLATFORM, reused, p1.id, False)
    with pytest.raises(IdempotencyConflictError):
        app.create_strategy(PLATFORM, reused, {"quoted_currency": "EUR"})
    assert app.recorder.max_notification_id() == before  # nothing written
    assert app.create_strategy(PLATFORM, reused, {"quoted_currency": "USD"}) == (made, False)

    patch = uuid4()
    changed, created = app.update_trader(PLATFORM, patch, p1.id, False)
    assert created and changed.auto_rebalance is False
    app.update_trader(PLATFORM, uuid4(), p1.id, True)
    again, created = app.update_trader(PLATFORM, patch, p1.id, False)  # a late retry
    assert not created and again.auto_rebalance is True  # the later change stands
    with pytest.raises(IdempotencyConflictError):
        app.update_trader(PLATFORM, patch, p1.id, True)
    with pytest.raises(IdempotencyConflictError, match="update_trader"):
        app.request_operation(PLATFORM, strategy.id, patch, OperationType.ENROLLMENT, enrollment)

    theirs, created = app.create_strategy("platform-b", reused, {"quoted_currency": "EUR"})
    assert created and theirs.id != made.id


def test_racing_first_uses_of_one_request_id_leave_exactly_one_request(
    app: Trading, strategy: Strategy
) -> None:
    """Two different requests that both find the id unused: the key is saved with each, so
    the second save conflicts (optimistic concurrency) and its rerun is refused."""
    reused = uuid4()
    app.register_participants(PLATFORM, ["P1"])
    enrollment = {"allocations": BLUE_CHIP, "participants": funded(["P1"])}
    app.create_strategy(PLATFORM, reused, {"quoted_currency": "USD"})
    before = app.recorder.max_notification_id()
    app._claimed = lambda *args: None  # type: ignore[method-assign]  # it read before the winner
    with pytest.raises(RecordConflictError):
        app.request_operation(PLATFORM, strategy.id, reused, OperationType.ENROLLMENT, enrollment)
    del app._claimed  # the rerun (retry_on_conflict) reads again
    assert app.recorder.max_notification_id() == before
    with pytest.raises(IdempotencyConflictError):
        app.request_operation(PLATFORM, strategy.id, reused, OperationType.ENROLLMENT, enrollment)


def test_pricing_works_from_one_book_and_never_from_one_made_before_the_reservation(
    app: Trading, strategy: Strategy
) -> None:
    """The book pricing gets reserves the float first; a book made without the reservation
    (say, by a caller that got ahead of itself) is not trusted by the lock."""
    app.register_participants(PLATFORM, ["P1", "P2"])
    body = {"allocations": BLUE_CHIP, "participants": funded(["P1", "P2"])}
    operation = check_all(app, request(app, strategy, OperationType.ENROLLMENT, body).id)
    stale = app._book(app.operation(operation.id))  # no budgets yet: it would fund nobody
    assert stale.blocks(PRICES) == {}
    book = app.pricing_book(operation.id)
    assert app.operation(operation.id).float_reserved
    assert book.blocks(PRICES) and book.blocks(PRICES) == book.blocks(dict(PRICES))
    quotes = fitting_quotes(app, operation.id)
    locked = app.lock_prices(operation.id, quotes, None, stale)
    assert locked.block_orders == {a: o.as_dict() for a, o in book.blocks(PRICES).items()}
