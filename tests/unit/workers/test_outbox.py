from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from infra.bus.messages import (
    CreditCheckRequested,
    DomainEventMessage,
    ExecutionRequested,
    PricingRequested,
)
from infra.bus.outbox import (
    TASK_EVENTS,
    TRANSACTION_HEADER,
    event_message,
    may_make_tasks,
    plain,
    publish_order,
    records_for,
)
from infra.bus.topic_names import DEFAULT as TOPICS

NOW = datetime(2026, 11, 26, tzinfo=UTC)
OPERATION = uuid4()


def message(type_: str, **data: object) -> DomainEventMessage:
    return DomainEventMessage(
        position=7,
        aggregate_id=OPERATION,
        aggregate_type=type_.split(".")[0],
        aggregate_version=3,
        type=type_,
        timestamp=NOW,
        data=data,
    )


def test_stored_state_becomes_a_json_ready_event_keyed_by_aggregate() -> None:
    trader = uuid4()
    state = {
        "originator_id": trader,
        "originator_version": 4,
        "timestamp": NOW,
        "funded": Decimal("100.00"),
        "instructions": [{"quantity": Decimal("0.1")}],
        "operation_id": OPERATION,
    }
    event = event_message(42, "domain.trader:Trader.Settled", trader, 4, state)
    assert (event.type, event.aggregate_type, event.position) == ("Trader.Settled", "Trader", 42)
    assert event.data == {
        "funded": "100.00",
        "instructions": [{"quantity": "0.1"}],
        "operation_id": str(OPERATION),
    }
    (record,) = records_for(event)
    assert (record.topic, record.key) == (TOPICS.events, str(trader))
    assert plain(NOW) == NOW.isoformat()


def test_every_planned_chunk_asks_for_its_credit_check() -> None:
    planned = message("OperationChunk.Planned", operation_id=str(OPERATION), index=3)
    _, task = records_for(planned)
    assert task.topic == TOPICS.credit_check
    assert task.key == f"{OPERATION}:3"
    assert CreditCheckRequested.model_validate_json(task.value).chunk == 3


def test_the_pricing_barrier_asks_for_a_price_lock_and_settling_for_block_orders() -> None:
    _, pricing = records_for(message("Operation.StatusChanged", status="pricing", reason=""))
    assert pricing.topic == TOPICS.pricing
    assert PricingRequested.model_validate_json(pricing.value).operation_id == OPERATION
    _, blocks = records_for(message("Operation.StatusChanged", status="settling", reason=""))
    assert ExecutionRequested.model_validate_json(blocks.value).action == "place_blocks"
    # Not behind chunk settlements on execution-requested: a locked quote has a deadline.
    assert blocks.topic == TOPICS.blocks != TOPICS.execution
    assert records_for(message("Operation.StatusChanged", status="settled", reason="")) == [
        records_for(message("Operation.StatusChanged", status="settled", reason=""))[0]
    ]


def test_fills_completed_settles_and_failing_releases_every_chunk() -> None:
    settle = records_for(message("Operation.FillsCompleted", chunk_count=3))[1:]
    assert [ExecutionRequested.model_validate_json(r.value).chunk for r in settle] == [0, 1, 2]
    assert {ExecutionRequested.model_validate_json(r.value).action for r in settle} == {"settle"}
    assert [r.key for r in settle] == [f"{OPERATION}:{i}" for i in range(3)]
    release = records_for(
        message("Operation.Failing", reason="pricing_failed", detail="x", chunk_count=2)
    )[1:]
    assert {ExecutionRequested.model_validate_json(r.value).action for r in release} == {"release"}


def test_other_events_make_no_task() -> None:
    assert len(records_for(message("Trader.HoldPlaced", operation_id=str(OPERATION)))) == 1


def test_without_events_only_the_stage_tasks_are_published() -> None:
    planned = message("OperationChunk.Planned", operation_id=str(OPERATION), index=3)
    assert records_for(planned, events=False) == records_for(planned)[1:]
    assert records_for(message("Trader.HoldPlaced", operation_id="x"), events=False) == []


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("domain.chunk:OperationChunk.Planned", True),
        ("domain.operation:Operation.StatusChanged", True),
        ("domain.operation:Operation.FillsCompleted", True),
        ("domain.operation:Operation.Failing", True),
        ("domain.trader:Trader.HoldPlaced", False),
        ("domain.trader:Trader.Settled", False),
        ("domain.operation:Operation.ChunkSettled", False),
        ("domain.chunk:OperationChunk.Checked", False),
    ],
)
def test_only_the_task_events_may_make_a_task(topic: str, expected: bool) -> None:
    assert may_make_tasks(topic) is expected


def test_every_task_event_named_makes_a_task_on_some_data() -> None:
    examples = {
        "OperationChunk.Planned": {"operation_id": str(OPERATION), "index": 0},
        "Operation.StatusChanged": {"status": "pricing", "reason": ""},
        "Operation.FillsCompleted": {"chunk_count": 1},
        "Operation.Failing": {"reason": "pricing_failed", "detail": "", "chunk_count": 1},
    }
    assert set(examples) == TASK_EVENTS
    for type_, data in examples.items():
        assert records_for(message(type_, **data), events=False)


def test_a_prefix_keeps_installations_apart() -> None:
    from infra.bus.topic_names import Topics

    staging = Topics("staging")
    planned = message("OperationChunk.Planned", operation_id=str(OPERATION), index=0)
    assert [r.topic for r in records_for(planned, staging)] == [
        "staging.events",
        "staging.credit-check-requested",
    ]
    assert staging.group("pricing") == "staging.pricing"
    for bad in ("", "has space", "x" * 101):
        try:
            Topics(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_an_event_record_carries_its_transaction_for_the_publish_order() -> None:
    event = message("Operation.Reconciled")
    (record,) = records_for(event, transaction=912)
    assert record.headers == {TRANSACTION_HEADER: "912"}
    assert publish_order(record.headers, event) == (912, 7)
    assert publish_order({}, event) == (0, 7)  # published by an older relay


@pytest.mark.parametrize("header", ["", "-1", "1.5", "²", "0x10", " 1", "9" * 19, "1" * 40])
def test_a_transaction_header_that_is_not_a_transaction_id_is_refused(header: str) -> None:
    with pytest.raises(ValueError, match="not a transaction id"):
        publish_order({TRANSACTION_HEADER: header}, message("Operation.Reconciled"))
