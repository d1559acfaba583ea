"""A Strategy's rebalancing policy: its versions, the automatic run of a period (only the
drifted Traders that cooled down, once per period, recorded with its evidence) and the model
breaks that stop automatic runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ids
from domain.allocations import Allocations
from domain.catalogue import Instrument, InstrumentStatus
from domain.commands import RunPolicy
from domain.errors import (
    IdempotencyConflictError,
    ModelRequiredError,
    PolicyRunNotDueError,
    StrategyNeedsAdjustmentError,
)
from domain.legs import Holdings
from domain.operation import Operation
from domain.policy import DriftBand, Policy, PolicyInvalidError
from domain.policy_run import TraderState, buffered_targets, select_for_run, weights_at
from domain.services import Trading
from domain.statuses import OperationStatus, OperationType, StrategyStatus
from domain.strategy import Strategy
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    PRICES,
    check_all,
    funded,
    lock_and_fill,
    new_app,
    request,
    run,
    settle_all,
)

D = Decimal
CODES = ["P1", "P2", "P3"]
DAILY = {"calendar": {"frequency": "daily", "time": "00:00"}, "drift_band": {"absolute": "0.05"}}
#: BTC up half: a 50/30/20 Trader is now 60/24/16, ten points off.
MOVED = {**PRICES, "BTC": D("90000.00")}


def tomorrow_noon() -> datetime:
    return datetime.combine(
        datetime.now(UTC).date() + timedelta(days=1), datetime.min.time(), UTC
    ) + timedelta(hours=12)


def enrolled(app: Trading, policy: dict[str, Any] | None = DAILY) -> Strategy:
    app.register_participants(PLATFORM, CODES)
    strategy, _ = app.create_strategy(
        PLATFORM, uuid4(), {"quoted_currency": "USD", "allocations": BLUE_CHIP}
    )
    done = run(app, strategy, OperationType.ENROLLMENT, {"participants": funded(CODES)})
    assert done.status is OperationStatus.SETTLED
    if policy is not None:
        strategy, _ = app.set_policy(PLATFORM, uuid4(), strategy.id, policy)
    return strategy


def run_policy(
    app: Trading,
    strategy: Strategy,
    now: datetime,
    prices: dict[str, Decimal] = MOVED,
    request_id: UUID | None = None,
) -> tuple[Any, bool]:
    current = app.strategy(PLATFORM, strategy.id)
    assert current.policy is not None and current.policy.calendar is not None
    period = current.policy.calendar.period(now).key
    command = RunPolicy(strategy.id, period, current.policy_version, prices, now)
    return app.handle(
        PLATFORM, request_id or ids.policy_run_request_id(strategy.id, period), command
    )


def test_each_policy_is_a_new_version_kept_as_an_event() -> None:
    app = new_app()
    strategy = enrolled(app)
    assert strategy.policy_version == 1 and strategy.policy is not None
    assert strategy.policy.drift_band == DriftBand(absolute=D("0.05"))
    request_id = uuid4()
    updated, created = app.set_policy(PLATFORM, request_id, strategy.id, {"cash_buffer": "0.01"})
    assert (
        created and updated.policy_version == 2 and updated.policy == Policy(cash_buffer=D("0.01"))
    )
    again, created = app.set_policy(PLATFORM, request_id, strategy.id, {"cash_buffer": "0.01"})
    assert not created and again.policy_version == 2
    with pytest.raises(IdempotencyConflictError):
        app.set_policy(PLATFORM, request_id, strategy.id, {"cash_buffer": "0.02"})
    kept = [
        e.version
        for e in app.repository.event_store.get(strategy.id)
        if isinstance(e, Strategy.PolicySet)
    ]
    assert kept == [1, 2]


def test_a_bad_policy_and_a_calendar_without_a_model_are_refused_with_nothing_written() -> None:
    app = new_app()
    strategy = enrolled(app, None)
    with pytest.raises(PolicyInvalidError):
        app.set_policy(PLATFORM, uuid4(), strategy.id, {"cash_buffer": "0.5"})
    bare, _ = app.create_strategy(PLATFORM, uuid4(), {"quoted_currency": "USD"})
    with pytest.raises(ModelRequiredError):
        app.set_policy(PLATFORM, uuid4(), bare.id, DAILY)
    assert app.strategy(PLATFORM, strategy.id).policy_version == 0
    assert app.strategy(PLATFORM, bare.id).policy_version == 0
    # A buffer alone needs no model.
    assert (
        app.set_policy(PLATFORM, uuid4(), bare.id, {"cash_buffer": "0.01"})[0].policy_version == 1
    )


def test_a_run_rebalances_only_the_drifted_traders_and_records_why() -> None:
    app = new_app()
    strategy = enrolled(app)
    # P3 is brought back in line at the moved prices by hand: only P1 and P2 drift.
    manual = run(app, strategy, OperationType.REBALANCE, {"participants": ["P3"]}, MOVED, MOVED)
    assert manual.status is OperationStatus.SETTLED
    now = tomorrow_noon()
    operation, created = run_policy(app, strategy, now)
    assert created and isinstance(operation, Operation)
    assert operation.type is OperationType.REBALANCE and operation.participant_count == 2
    assert operation.parameters == {
        "model_version": "1",
        "origin": "policy",
        "policy_version": "1",
        "period": now.date().isoformat(),
    }
    assert operation.request_id == ids.policy_run_request_id(strategy.id, now.date().isoformat())
    recorded = [
        e
        for e in app.repository.event_store.get(strategy.id)
        if isinstance(e, Strategy.PolicyRunRecorded)
    ]
    assert len(recorded) == 1
    run_event = recorded[0]
    assert (run_event.evaluated, run_event.outside, run_event.cooling) == (3, 2, 0)
    assert run_event.operation_id == operation.id and run_event.prices["BTC"] == "90000.00"
    # It is an ordinary rebalance: it settles, and the drifted Traders are back in line.
    operation = check_all(app, operation.id, MOVED)
    lock_and_fill(app, operation.id, MOVED)
    assert settle_all(app, operation.id).status is OperationStatus.SETTLED
    for code in ("P1", "P2"):
        trader = app.trader(PLATFORM, ids.trader_id(strategy.id, code))
        weights = weights_at(trader.holdings, MOVED)
        assert weights is not None
        assert not DriftBand(absolute=D("0.05")).outside(weights, Allocations.from_list(BLUE_CHIP))


def test_a_run_keeps_the_policys_cash_buffer_aside() -> None:
    app = new_app()
    strategy = enrolled(app, {**DAILY, "cash_buffer": "0.02"})
    operation, _ = run_policy(app, strategy, tomorrow_noon())
    assert isinstance(operation, Operation) and operation.parameters["cash_buffer"] == "0.02"
    operation = check_all(app, operation.id, MOVED)
    lock_and_fill(app, operation.id, MOVED)
    assert settle_all(app, operation.id).status is OperationStatus.SETTLED
    for code in CODES:
        held = app.trader(PLATFORM, ids.trader_id(strategy.id, code)).holdings
        assert held.cash >= held.value(MOVED) * D("0.02")


def test_a_period_runs_once_whatever_the_request_id() -> None:
    app = new_app()
    strategy = enrolled(app)
    now = tomorrow_noon()
    first, created = run_policy(app, strategy, now)
    assert created
    # The scheduler restarted: other prices, same period, same deterministic id: a replay.
    again, created = run_policy(app, strategy, now + timedelta(hours=1), PRICES)
    assert not created and again.id == first.id
    with pytest.raises(PolicyRunNotDueError):
        run_policy(app, strategy, now + timedelta(hours=2), request_id=uuid4())
    # The next day is another period.
    _, created = run_policy(app, strategy, now + timedelta(days=1), PRICES)
    assert created


def test_a_run_with_nobody_drifted_records_the_period_and_requests_nothing() -> None:
    app = new_app()
    strategy = enrolled(app)
    result, created = run_policy(app, strategy, tomorrow_noon(), PRICES)
    assert created and isinstance(result, Strategy)
    period = tomorrow_noon().date().isoformat()
    assert result.last_policy_period == period
    request_id = ids.policy_run_request_id(strategy.id, period)
    assert app.find(ids.operation_id(PLATFORM, request_id), Operation) is None


def test_the_cooldown_spares_traders_rebalanced_lately_manual_or_not() -> None:
    app = new_app()
    policy = {**DAILY, "cooldown_days": 2}
    strategy = enrolled(app, policy)
    run(app, strategy, OperationType.REBALANCE, {"participants": ["P3"]}, MOVED, MOVED)
    doubled = {**PRICES, "BTC": D("180000.00")}  # everyone drifts again, P3 included
    now = tomorrow_noon()
    operation, _ = run_policy(app, strategy, now, doubled)
    assert isinstance(operation, Operation) and operation.participant_count == 2
    event = [
        e
        for e in app.repository.event_store.get(strategy.id)
        if isinstance(e, Strategy.PolicyRunRecorded)
    ][-1]
    assert (event.outside, event.cooling) == (3, 1)
    # Two days on, P3 has cooled down.
    operation, _ = run_policy(app, strategy, now + timedelta(days=2), doubled)
    assert isinstance(operation, Operation) and operation.participant_count == 3


def test_a_run_is_refused_when_not_due_or_the_policy_changed() -> None:
    app = new_app()
    strategy = enrolled(app)
    today = datetime.now(UTC)
    with pytest.raises(PolicyRunNotDueError):  # today's 00:00 came before the policy
        run_policy(app, strategy, today)
    stale = app.strategy(PLATFORM, strategy.id)
    app.set_policy(PLATFORM, uuid4(), strategy.id, {**DAILY, "cooldown_days": 1})
    now = tomorrow_noon()
    period = now.date().isoformat()
    with pytest.raises(PolicyRunNotDueError):
        app.handle(
            PLATFORM,
            ids.policy_run_request_id(strategy.id, period),
            RunPolicy(strategy.id, period, stale.policy_version, MOVED, now),
        )
    paused = {"calendar": {**DAILY["calendar"], "paused_until": "2999-01-01"}}
    app.set_policy(PLATFORM, uuid4(), strategy.id, paused)
    with pytest.raises(PolicyRunNotDueError):
        run_policy(app, strategy, now)


def test_a_halted_instrument_of_the_model_stops_automatic_runs_until_a_new_model() -> None:
    app = new_app()
    strategy = enrolled(app)
    assert app.review_models([strategy.id]) == []  # tradable: nothing changes
    app.list_instruments([Instrument("SOL", "USD", 8, D("1.00"), InstrumentStatus.HALTED)])
    (changed,) = app.review_models([strategy.id])
    assert changed.status is StrategyStatus.NEEDS_ADJUSTMENT and changed.broken_assets == ["SOL"]
    assert app.review_models([strategy.id]) == []  # once per cause
    with pytest.raises(StrategyNeedsAdjustmentError):
        run_policy(app, strategy, tomorrow_noon())
    # A manual rebalance naming another model is still accepted (its credit check then
    # excludes whoever must sell the halted SOL, as for any Operation).
    other = [
        {"underlying_currency": "BTC", "weight": "0.6"},
        {"underlying_currency": "ETH", "weight": "0.4"},
    ]
    manual = request(
        app, strategy, OperationType.REBALANCE, {"participants": CODES, "allocations": other}
    )
    assert manual.status is OperationStatus.VALIDATING
    # A new model is the adjustment.
    adjusted, _ = app.set_model(PLATFORM, uuid4(), strategy.id, {"allocations": other})
    assert adjusted.status is StrategyStatus.ACTIVE
    changes = [
        (e.status, e.reason)
        for e in app.repository.event_store.get(strategy.id)
        if isinstance(e, Strategy.StatusChanged)
    ]
    assert changes == [("needs_adjustment", "instrument_not_tradable"), ("active", "model_set")]


def test_an_instrument_enabled_again_makes_the_strategy_active_again() -> None:
    app = new_app()
    strategy = enrolled(app)
    app.list_instruments([Instrument("SOL", "USD", 8, D("1.00"), InstrumentStatus.DISABLED)])
    app.review_models([strategy.id])
    app.list_instruments([Instrument("SOL", "USD", 8, D("1.00"))])
    (changed,) = app.review_models([strategy.id])
    assert changed.status is StrategyStatus.ACTIVE


def test_policy_runs_and_statuses_replay_from_the_event_history() -> None:
    app = new_app()
    strategy = enrolled(app)
    run_policy(app, strategy, tomorrow_noon())
    app.list_instruments([Instrument("SOL", "USD", 8, D("1.00"), InstrumentStatus.HALTED)])
    app.review_models([strategy.id])
    replayed = None
    for event in app.repository.event_store.get(strategy.id):
        replayed = event.mutate(replayed)
    live = app.strategy(PLATFORM, strategy.id)
    assert isinstance(replayed, Strategy)
    assert replayed.policy == live.policy and replayed.policy_since == live.policy_since
    assert replayed.last_policy_period == live.last_policy_period
    assert replayed.status is StrategyStatus.NEEDS_ADJUSTMENT


def test_a_strategy_rebuilt_from_its_snapshot_keeps_its_policy_and_runs() -> None:
    """Strategies are snapshotted every 50 events; 55 daily runs take one past that."""
    app = new_app()
    strategy = enrolled(app)
    start = tomorrow_noon()
    for day in range(55):
        run_policy(app, strategy, start + timedelta(days=day), PRICES)
    assert app.snapshots is not None and list(app.snapshots.get(strategy.id))
    live = app.strategy(PLATFORM, strategy.id)
    replayed = None
    for event in app.repository.event_store.get(strategy.id):
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Strategy)
    assert replayed.__dict__ == live.__dict__
    assert live.last_policy_period == (start + timedelta(days=54)).date().isoformat()


# -- the selection, purely ------------------------------------------------------------

MODEL = Allocations.from_list(BLUE_CHIP)
NOW = datetime(2027, 3, 1, tzinfo=UTC)
quantities = st.decimals(min_value=0, max_value=10, places=4)
cash = st.decimals(min_value=0, max_value=100000, places=2)
holdings = st.builds(
    lambda b, e, s, c: Holdings({"BTC": b, "ETH": e, "SOL": s}, c),
    quantities,
    quantities,
    quantities,
    cash,
)
traders = st.lists(
    st.tuples(holdings, st.integers(min_value=0, max_value=30) | st.none()), max_size=12
)
bands = st.decimals(min_value=D("0.001"), max_value=D("0.5"), places=3)


def states(drawn: list[tuple[Holdings, int | None]]) -> list[TraderState]:
    return [
        TraderState(f"T{i}", held, None if days is None else NOW - timedelta(days=days))
        for i, (held, days) in enumerate(drawn)
    ]


@given(traders, bands, st.integers(min_value=0, max_value=30))
def test_a_run_selects_exactly_the_traders_outside_the_band_and_cooled_down(
    drawn: list[tuple[Holdings, int | None]], width: Decimal, cooldown: int
) -> None:
    policy = Policy(DriftBand(absolute=width), cooldown_days=cooldown)
    selection = select_for_run(states(drawn), MODEL, policy, PRICES, NOW)
    expected = []
    for state in states(drawn):
        weights = weights_at(state.holdings, PRICES)
        assert weights is not None
        outside = bool(weights) and policy.drift_band.outside(weights, MODEL)  # type: ignore[union-attr]
        outside = outside or (not weights and state.holdings.value(PRICES) > 0)
        if outside and policy.cooled_down(state.rebalanced_on, NOW):
            expected.append(state.participant_code)
    assert list(selection.participants) == sorted(expected)
    assert selection.evaluated == len(drawn)
    assert selection.outside - selection.cooling == len(expected)


@given(traders, bands, bands)
def test_a_wider_band_never_selects_more_traders(
    drawn: list[tuple[Holdings, int | None]], one: Decimal, other: Decimal
) -> None:
    narrow, wide = sorted((one, other))
    pick = lambda width: set(  # noqa: E731
        select_for_run(
            states(drawn), MODEL, Policy(DriftBand(absolute=width)), PRICES, NOW
        ).participants
    )
    assert pick(wide) <= pick(narrow)


def test_the_cash_buffer_lowers_every_target_and_leaves_the_rest_in_cash() -> None:
    targets = buffered_targets(MODEL, D("0.02"))
    assert [a.weight for a in targets] == [D("0.490"), D("0.294"), D("0.196")]
    assert sum(a.weight for a in targets) == D("0.98")
    assert buffered_targets(MODEL, D(0)) is MODEL


def test_a_trader_holding_an_unpriced_asset_is_counted_and_left_out() -> None:
    held = Holdings({"DOGE": D(1)}, D(0))
    selection = select_for_run([TraderState("X", held)], MODEL, Policy(), PRICES, NOW)
    assert selection.participants == () and selection.unpriced == 1 and selection.evaluated == 0
