"""A Strategy's model: versions of its target allocations, each kept, and Operations that
send no allocations trading to the current one and recording which version they used."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from domain.allocations import Allocations
from domain.errors import (
    AllocationInvalidError,
    IdempotencyConflictError,
    StrategyNotFoundError,
)
from domain.services import Trading
from domain.statuses import OperationStatus, OperationType
from domain.strategy import Strategy
from tests.unit.domain.flows import BLUE_CHIP, PLATFORM, funded, new_app, run

SHIFTED = [
    {"underlying_currency": "BTC", "weight": "0.40"},
    {"underlying_currency": "ETH", "weight": "0.40"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
CODES = ["M1", "M2", "M3"]


def modelled(app: Trading, allocations: list[dict[str, str]] | None = BLUE_CHIP) -> Strategy:
    body: dict[str, Any] = {"quoted_currency": "USD"}
    if allocations is not None:
        body["allocations"] = allocations
    strategy, created = app.create_strategy(PLATFORM, uuid4(), body)
    assert created
    return strategy


def test_a_strategy_created_with_allocations_has_them_as_its_first_model() -> None:
    app = new_app()
    strategy = modelled(app)
    assert strategy.model == BLUE_CHIP and strategy.model_version == 1
    bare = modelled(app, None)
    assert bare.model is None and bare.model_version == 0


def test_each_new_model_is_a_new_version_and_every_version_is_kept() -> None:
    app = new_app()
    strategy = modelled(app)
    updated, created = app.set_model(PLATFORM, uuid4(), strategy.id, {"allocations": SHIFTED})
    assert created and updated.model == SHIFTED and updated.model_version == 2
    versions = [
        (e.version, e.allocations)
        for e in app.repository.event_store.get(strategy.id)
        if isinstance(e, Strategy.ModelSet)
    ]
    assert versions == [(1, BLUE_CHIP), (2, SHIFTED)]


def test_a_model_request_replays_and_its_id_cannot_be_reused() -> None:
    app = new_app()
    strategy = modelled(app)
    request_id = uuid4()
    app.set_model(PLATFORM, request_id, strategy.id, {"allocations": SHIFTED})
    again, created = app.set_model(PLATFORM, request_id, strategy.id, {"allocations": SHIFTED})
    assert not created and again.model_version == 2
    with pytest.raises(IdempotencyConflictError):
        app.set_model(PLATFORM, request_id, strategy.id, {"allocations": BLUE_CHIP})


@pytest.mark.parametrize(
    "allocations",
    [
        [{"underlying_currency": "BTC", "weight": "0.5"}],  # does not sum to 1
        [{"underlying_currency": "NOPE", "weight": "1"}],  # not in the catalogue
        [],
        None,
    ],
)
def test_a_bad_model_is_refused_and_nothing_is_written(allocations: Any) -> None:
    app = new_app()
    strategy = modelled(app)
    with pytest.raises(AllocationInvalidError):
        app.set_model(PLATFORM, uuid4(), strategy.id, {"allocations": allocations})
    assert app.strategy(PLATFORM, strategy.id).model_version == 1
    if allocations is not None:
        with pytest.raises(AllocationInvalidError):
            modelled(app, allocations)


def test_only_the_strategys_own_platform_may_set_its_model() -> None:
    app = new_app()
    strategy = modelled(app)
    with pytest.raises(StrategyNotFoundError):
        app.set_model("platform-b", uuid4(), strategy.id, {"allocations": SHIFTED})
    with pytest.raises(StrategyNotFoundError):
        app.set_model(PLATFORM, uuid4(), uuid4(), {"allocations": SHIFTED})


def test_operations_without_allocations_trade_to_the_current_model_and_record_its_version() -> None:
    app = new_app()
    app.register_participants(PLATFORM, CODES)
    strategy = modelled(app)
    enrolled = run(app, strategy, OperationType.ENROLLMENT, {"participants": funded(CODES)})
    assert enrolled.status is OperationStatus.SETTLED
    assert enrolled.allocations == BLUE_CHIP
    assert enrolled.parameters == {"model_version": "1"}

    app.set_model(PLATFORM, uuid4(), strategy.id, {"allocations": SHIFTED})
    rebalanced = run(app, strategy, OperationType.REBALANCE, {"participants": CODES})
    assert rebalanced.status is OperationStatus.SETTLED
    assert rebalanced.allocations == SHIFTED
    assert rebalanced.parameters == {"model_version": "2"}

    # Allocations sent with the request still win, and no model version is recorded.
    sold = run(
        app,
        strategy,
        OperationType.PARTIAL_SELL,
        {"allocations": BLUE_CHIP, "participants": funded(CODES, "10.00")},
    )
    assert sold.allocations == BLUE_CHIP and "model_version" not in sold.parameters


def test_without_a_model_an_operation_still_needs_its_allocations() -> None:
    app = new_app()
    app.register_participants(PLATFORM, CODES)
    strategy = modelled(app, None)
    with pytest.raises(AllocationInvalidError):
        app.request_operation(
            PLATFORM,
            strategy.id,
            uuid4(),
            OperationType.ENROLLMENT,
            {"participants": funded(CODES)},
        )


def test_a_model_replays_from_the_event_history() -> None:
    app = new_app()
    strategy = modelled(app)
    app.set_model(PLATFORM, uuid4(), strategy.id, {"allocations": SHIFTED})
    replayed = None
    for event in app.repository.event_store.get(strategy.id):
        replayed = event.mutate(replayed)
    assert isinstance(replayed, Strategy)
    assert replayed.model == SHIFTED and replayed.model_version == 2
    assert replayed.model is not None
    assert Allocations.from_list(replayed.model).weight_of("ETH") == Decimal("0.40")
