"""The read models as pure folds of real histories: every event type, the version guard, and
independence from the order in which different streams arrive."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4, uuid5

import pytest

from domain import ids
from domain.chunk import chunk_id
from domain.statuses import OperationType
from projections.executions import EXECUTIONS, OPERATION_CHUNKS, ExecutionRow
from projections.operations import OPERATIONS, OperationRow
from projections.strategies import STRATEGIES, StrategyRow
from projections.traders import EVENTS as TRADER_EVENTS
from projections.traders import TRADERS, TraderRow
from projections.writer import MODELS, ROW_TYPES, Projection, models_for
from tests.unit.domain.flows import BLUE_CHIP, PLATFORM, check_all, funded, request
from tests.unit.projections.history import INELIGIBLE, NEWCOMER, Story, messages, story

if TYPE_CHECKING:
    from infra.bus.messages import DomainEventMessage


@pytest.fixture(scope="module")
def told() -> Story:
    return story()


@pytest.fixture(scope="module")
def history(told: Story) -> list[DomainEventMessage]:
    return messages(told.app)


def fold(events: list[DomainEventMessage]) -> Projection:
    projection = Projection()
    for event in events:
        projection.apply(event)
    return projection


def rows_of(projection: Projection, table: str) -> dict[UUID, Any]:
    return {key[1]: row for key, row in projection.rows.items() if key[0] == table}


def execution(projection: Projection, operation_id: UUID, code: str) -> ExecutionRow:
    row = projection.get((EXECUTIONS.name, ids.execution_id(operation_id, code)))
    assert isinstance(row, ExecutionRow)
    return row


def test_every_row_type_lists_exactly_its_table_columns() -> None:
    for kind in ROW_TYPES.values():
        assert tuple(f.name for f in fields(kind)) == kind.TABLE.column_names, kind.__name__


def test_a_created_strategy_is_one_row(told: Story, history: list[DomainEventMessage]) -> None:
    row = fold(history).get((STRATEGIES.name, told.strategy.id))
    created = next(e for e in history if e.type == "Strategy.Created")
    assert row == StrategyRow(
        id=told.strategy.id,
        platform_id=PLATFORM,
        request_id=told.strategy.request_id,
        quoted_currency="USD",
        metadata={},
        created_at=created.timestamp,
        updated_at=created.timestamp,
        source_id=told.strategy.id,
        version=1,
    )


def test_trader_rows_hold_what_the_aggregates_hold(
    told: Story, history: list[DomainEventMessage]
) -> None:
    projected = rows_of(fold(history), TRADERS.name)
    for code in ("P1", "P2", "P3", NEWCOMER):
        trader = told.trader(code)
        row: TraderRow = projected[trader.id]
        assert (row.status, row.auto_rebalance) == (trader.status.value, trader.auto_rebalance)
        assert {a: Decimal(q) for a, q in row.positions.items()} == trader.positions
        assert row.cash == trader.cash
        assert (row.strategy_id, row.account_label) == (told.strategy.id, str(told.strategy.id))
        # Holds and releases do not change the Trader's row; its other events do.
        last = [e for e in history if e.aggregate_id == trader.id and e.type in TRADER_EVENTS]
        assert (row.version, row.updated_at) == (last[-1].aggregate_version, last[-1].timestamp)
    assert projected[told.trader(NEWCOMER).id].status == "pending"
    assert projected[told.trader("P1").id].positions["ETH"] == "0.15000000"


def test_an_operation_row_follows_its_status_counts_and_prices(
    told: Story, history: list[DomainEventMessage]
) -> None:
    projected = rows_of(fold(history), OPERATIONS.name)
    for operation in (told.enrollment, told.top_up, told.failed_enrollment, told.failed_top_up):
        row: OperationRow = projected[operation.id]
        assert (row.type, row.status, row.status_reason) == (
            operation.type.value,
            operation.status.value,
            operation.status_reason.value,
        )
        assert row.counts == operation.counts
        assert row.locked_prices == operation.locked_prices
        assert (row.allocations, row.participant_count) == (BLUE_CHIP, operation.participant_count)
        assert (row.created_at, row.updated_at) == (operation.created_on, operation.modified_on)
        assert (row.version, row.request_id) == (operation.version, operation.request_id)
    assert projected[told.enrollment.id].status_reason == "partial_success"
    assert projected[told.failed_top_up.id].status_reason == "pricing_failed"


def test_an_operation_row_counts_its_chunks_through_each_stage(
    told: Story, history: list[DomainEventMessage]
) -> None:
    projected = rows_of(fold(history), OPERATIONS.name)
    for operation in (told.enrollment, told.top_up, told.failed_enrollment, told.failed_top_up):
        row: OperationRow = projected[operation.id]
        stages = list(operation.chunks.values())
        assert row.chunk_count == operation.chunk_count == len(stages)
        # a chunk released after a failure was checked first, and never settled
        assert row.chunks_checked == len(stages) - stages.count("planned")
        assert row.chunks_settled == stages.count("settled")
    settled = projected[told.enrollment.id]
    assert settled.chunks_checked == settled.chunks_settled == settled.chunk_count


def test_approved_executions_settle_with_filled_instructions(
    told: Story, history: list[DomainEventMessage]
) -> None:
    row = execution(fold(history), told.enrollment.id, "P1")
    trader = told.trader("P1")
    assert (row.status, row.status_reason, row.status_reasons) == ("settled", "", [])
    assert (row.trader_id, row.account_label) == (trader.id, str(told.strategy.id))
    assert (row.platform_id, row.strategy_id, row.participant_code) == (
        PLATFORM,
        told.strategy.id,
        "P1",
    )
    assert row.source_id == trader.id
    btc = row.instructions[0]
    assert btc == {
        "underlying_currency": "BTC",
        "side": "buy",
        "status": "filled",
        "requested_quantity": "0.00833333",
        "requested_notional": "500.00",
        "price": "60000.00",
        "quantity": "0.00833333",
        "total_notional": "500.00",
        "trade_id": str(uuid5(row.id, "BTC")),
    }
    assert [i["underlying_currency"] for i in row.instructions] == ["BTC", "ETH", "SOL"]
    assert row.updated_at > row.created_at


def test_a_participant_the_check_rejects_before_any_trader_exists(
    told: Story, history: list[DomainEventMessage]
) -> None:
    row = execution(fold(history), told.enrollment.id, INELIGIBLE)
    assert (row.status, row.status_reason, row.status_reasons) == (
        "rejected",
        "participant_ineligible",
        ["participant_ineligible"],
    )
    assert (row.trader_id, row.account_label, row.instructions) == (None, "", [])
    assert (row.platform_id, row.strategy_id) == (PLATFORM, told.strategy.id)
    assert row.source_id == chunk_id(told.enrollment.id, 1)


def test_an_existing_trader_rejected_by_the_check_keeps_its_id(
    told: Story, history: list[DomainEventMessage]
) -> None:
    row = execution(fold(history), told.failed_enrollment.id, "P2")
    assert (row.status, row.status_reason) == ("rejected", "trader_already_exists")
    assert (row.trader_id, row.account_label) == (told.trader("P2").id, str(told.strategy.id))


def test_released_holds_end_rejected_and_a_never_visible_trader_is_blanked(
    told: Story, history: list[DomainEventMessage]
) -> None:
    projection = fold(history)
    released = execution(projection, told.failed_top_up.id, "P3")
    assert (released.status, released.status_reasons) == ("rejected", ["pricing_failed"])
    assert released.trader_id == told.trader("P3").id
    assert {i["status"] for i in released.instructions} == {"rejected"}
    assert released.instructions[0]["requested_notional"] == "150.00"
    assert released.instructions[0]["price"] is None
    newcomer = execution(projection, told.failed_enrollment.id, NEWCOMER)
    assert (newcomer.status, newcomer.trader_id, newcomer.account_label) == ("rejected", None, "")


def test_a_checked_trader_awaits_execution_with_pending_instructions() -> None:
    fresh = story()
    operation = request(
        fresh.app,
        fresh.strategy,
        OperationType.TOP_UP,
        {"allocations": BLUE_CHIP, "participants": funded(["P2"], "100.00")},
    )
    check_all(fresh.app, operation.id)
    row = execution(fold(messages(fresh.app)), operation.id, "P2")
    assert (row.status, row.status_reason) == ("awaiting_execution", "")
    assert row.instructions[1] == {
        "underlying_currency": "ETH",
        "side": "buy",
        "status": "pending",
        "requested_quantity": "0.01000000",
        "requested_notional": "30.00",
        "price": None,
        "quantity": None,
        "total_notional": None,
        "trade_id": None,
    }


def test_changing_auto_rebalance_updates_the_trader_row() -> None:
    fresh = story()
    before = len(messages(fresh.app))
    trader, _ = fresh.app.update_trader(PLATFORM, uuid4(), fresh.trader("P1").id, False)
    history = messages(fresh.app)
    new = [message.type for message in history[before:]]
    assert new == ["Trader.AutoRebalanceChanged", "RequestKey.Claimed"]
    row = fold(history).get((TRADERS.name, trader.id))
    assert (row.auto_rebalance, row.version, row.updated_at) == (
        False,
        trader.version,
        trader.modified_on,
    )


def test_an_event_applied_twice_changes_nothing_the_second_time(
    history: list[DomainEventMessage],
) -> None:
    projection = Projection()
    for event in history:
        first = projection.apply(event)
        again = projection.apply(event)
        assert again == []
        if event.type in ("Trader.Settled", "Operation.StatusChanged"):
            assert first, event.type
    assert projection.rows == fold(history).rows


def test_an_older_event_redelivered_after_newer_ones_changes_nothing(
    history: list[DomainEventMessage],
) -> None:
    projection = fold(history)
    before = dict(projection.rows)
    for event in reversed(history):
        assert projection.apply(event) == []
    assert projection.rows == before


def test_events_of_other_aggregates_change_no_read_model(
    history: list[DomainEventMessage],
) -> None:
    others = [
        e for e in history if e.aggregate_type in ("Catalogue", "FloatAccount", "Participant")
    ]
    assert others
    projection = Projection()
    assert [projection.apply(e) for e in others] == [[] for _ in others]
    assert not projection.dirty


def _interleave(history: list[DomainEventMessage], seed: int) -> list[DomainEventMessage]:
    """The history with its streams interleaved at random, each stream still in order."""
    streams: dict[UUID, list[DomainEventMessage]] = defaultdict(list)
    for event in history:
        streams[event.aggregate_id].append(event)
    shuffler = random.Random(seed)
    queues = [list(reversed(s)) for s in streams.values()]
    mixed = []
    while queues:
        queue = shuffler.choice(queues)
        mixed.append(queue.pop())
        if not queue:
            queues.remove(queue)
    return mixed


@pytest.mark.parametrize("seed", range(8))
def test_rows_do_not_depend_on_the_order_across_streams(
    history: list[DomainEventMessage], seed: int
) -> None:
    expected = fold(history)
    mixed = fold(_interleave(history, seed))
    for table in (STRATEGIES, TRADERS, OPERATIONS, EXECUTIONS, OPERATION_CHUNKS):
        assert rows_of(mixed, table.name) == rows_of(expected, table.name), table.name


def test_a_chunk_checked_before_its_operation_already_knows_its_platform(
    told: Story, history: list[DomainEventMessage]
) -> None:
    """OperationChunk.Planned carries platform and strategy, so a rejection checked before
    the Operation's own stream arrives is placed (and listed) at once."""
    chunk = [e for e in history if e.aggregate_id == chunk_id(told.enrollment.id, 1)]
    projection = fold(chunk)
    early = execution(projection, told.enrollment.id, INELIGIBLE)
    assert (early.platform_id, early.strategy_id, early.account_label) == (
        PLATFORM,
        told.strategy.id,
        "",
    )
    chunk_row = projection.get((OPERATION_CHUNKS.name, chunk_id(told.enrollment.id, 1)))
    assert (chunk_row.platform_id, chunk_row.strategy_id) == (PLATFORM, told.strategy.id)


def test_a_later_event_without_its_creating_event_is_ignored(
    history: list[DomainEventMessage],
) -> None:
    later = [e for e in history if e.type in ("Trader.Settled", "Operation.StatusChanged")]
    projection = Projection()
    assert [projection.apply(e) for e in later] == [[] for _ in later]


def test_a_model_that_does_not_handle_an_event_neither_reads_nor_changes_a_row(
    history: list[DomainEventMessage],
) -> None:
    """The writer asks only the models that handle an event's kind (`models_for`): the
    others must have nothing to say about it, whatever rows are known."""
    projection = Projection()
    for event in history:
        asked = models_for(event.aggregate_type, event.type)
        for model in set(MODELS) - set(asked):
            assert model.needs(event, projection) == [], (model.__name__, event.type)
            assert model.changes(event, projection) == [], (model.__name__, event.type)
        projection.apply(event)
    assert {m.__name__ for e in history for m in models_for(e.aggregate_type, e.type)} == {
        m.__name__ for m in MODELS
    }
