"""A preview decides what the real run decides when the prices do not move: the same legs per
participant, the same exclusions with the same reasons, the same float reservation and the
same block orders; and it writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from domain import ids
from domain.chunk import OperationChunk, chunk_id
from domain.commands import operation_command
from domain.eligibility import ParticipantStatus
from domain.errors import InvalidRequestError, StrategyNotFoundError
from domain.operation import Operation
from domain.preview import AT_PRICING, OperationPreview
from domain.services import Trading
from domain.statuses import OperationType
from domain.strategy import Strategy
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    PRICES,
    check_all,
    funded,
    new_app,
    new_strategy,
    request,
    run,
)

AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
Outcomes = dict[str, tuple[str, tuple[str, ...], tuple[dict[str, str], ...]]]


def preview(
    app: Trading,
    strategy: Strategy,
    kind: OperationType,
    body: Mapping[str, Any],
    prices: Mapping[str, Decimal] = PRICES,
) -> OperationPreview:
    return app.preview(PLATFORM, operation_command(kind, strategy.id, body), prices, AT)


def previewed(found: OperationPreview) -> Outcomes:
    return {
        p.participant_code: (
            p.outcome.value,
            tuple(r.value for r in p.reasons),
            tuple(leg.as_dict() for leg in p.legs),
        )
        for p in found.participants
    }


def ran(app: Trading, operation: Operation) -> Outcomes:
    """Each participant's end in the real run: the chunk's record, and its Trader's legs."""
    outcomes: Outcomes = {}
    for index in range(operation.chunk_count):
        chunk = app.find(chunk_id(operation.id, index), OperationChunk)
        assert chunk is not None
        for code, decision in chunk.decisions.items():
            status = "approved" if decision["outcome"] == "settled" else decision["outcome"]
            reasons = tuple(r for r in decision["reasons"].split(",") if r)
            outcomes[code] = (status, reasons, _legs(app, operation, code) if reasons == () else ())
    return outcomes


def _legs(app: Trading, operation: Operation, code: str) -> tuple[dict[str, str], ...]:
    trader_id = ids.trader_id(operation.strategy_id, code)
    for event in app.events.get(trader_id):
        if type(event).__name__ == "Settled" and event.operation_id == operation.id:
            return tuple(
                {k: v for k, v in leg.items() if k != "price"} for leg in event.instructions
            )
    return ()


def assert_same_run(
    app: Trading, strategy: Strategy, kind: OperationType, body: Mapping[str, Any]
) -> OperationPreview:
    """Preview, then run the same request at the same prices: the same decisions, the same
    blocks and the same float reservation."""
    before = app.recorder.max_notification_id()
    found = preview(app, strategy, kind, body)
    assert app.recorder.max_notification_id() == before, "a preview wrote something"
    operation = run(app, strategy, kind, body)
    assert previewed(found) == ran(app, operation)
    blocks = {
        t.asset: {"side": t.block.side.value, "quantity": str(t.block.quantity)}
        for t in found.totals
        if t.block is not None
    }
    assert blocks == operation.block_orders
    if kind.buys_from_float:
        (reservation,) = [
            e for e in app.events.get(operation.id) if type(e).__name__ == "FloatReserved"
        ]
        assert found.float.reserved == reservation.reserved
    return found


def enrolled(app: Trading, codes: list[str], amount: str = "1000.00") -> Strategy:
    strategy = new_strategy(app)
    app.register_participants(PLATFORM, codes)
    body = {"allocations": BLUE_CHIP, "participants": funded(codes, amount)}
    assert run(app, strategy, OperationType.ENROLLMENT, body).status.value == "settled"
    return strategy


def test_enrollment_preview_is_the_run_with_float_first_come_first_served() -> None:
    app = new_app(chunk_size=2, float_usd="2500.00")
    strategy = new_strategy(app)
    app.register_participants(PLATFORM, ["E1", "E2", "E3", "E4", "E5"])
    body = {
        "allocations": BLUE_CHIP,
        "participants": [
            *funded(["E1", "E2", "E3"], "1000.00"),
            *funded(["E4"], "400.00"),
            *funded(["E5"], "0.01"),
            *funded(["NOBODY"], "10.00"),
        ],
    }
    found = assert_same_run(app, strategy, OperationType.ENROLLMENT, body)
    by_code = {p.participant_code: p for p in found.participants}
    assert by_code["E3"].reasons[0].value == "insufficient_funds"
    assert by_code["E3"].decided_at == AT_PRICING
    assert by_code["E4"].outcome.value == "approved"  # what is left still covers it
    assert by_code["E5"].reasons[0].value == "dust"
    assert by_code["NOBODY"].reasons[0].value == "participant_ineligible"
    assert found.float.available == Decimal("2500.00")
    assert found.float.needed == Decimal("3400.00")
    assert found.float.reserved == Decimal("2400.00")
    assert found.counts == {"approved": 3, "rejected": 2, "skipped": 1}
    assert found.reasons == {"dust": 1, "insufficient_funds": 1, "participant_ineligible": 1}


def test_top_up_preview_sees_concurrent_holds_and_unknown_traders() -> None:
    app = new_app(chunk_size=2)
    strategy = enrolled(app, ["T1", "T2", "T3"])
    # Another Operation holds T2: checked, not priced yet.
    other = check_all(
        app,
        request(
            app,
            strategy,
            OperationType.TOP_UP,
            {"allocations": BLUE_CHIP, "participants": funded(["T2"])},
        ).id,
    )
    assert other.counts["approved"] == 1
    body = {"allocations": BLUE_CHIP, "participants": funded(["T1", "T2", "T3", "T9"], "50.00")}
    found = assert_same_run(app, strategy, OperationType.TOP_UP, body)
    reasons = {p.participant_code: [r.value for r in p.reasons] for p in found.participants}
    assert reasons == {
        "T1": [],
        "T2": ["concurrent_hold"],
        "T3": [],
        "T9": ["trader_not_found", "participant_ineligible"],
    }


def test_partial_sell_preview_refuses_what_holdings_cannot_cover_and_skips_dust() -> None:
    app = new_app(chunk_size=2)
    strategy = enrolled(app, ["S1", "S2", "S3"])
    body = {
        "allocations": BLUE_CHIP,
        "participants": [
            *funded(["S1"], "100.00"),
            *funded(["S2"], "5000.00"),
            *funded(["S3"], "0.01"),
        ],
    }
    found = assert_same_run(app, strategy, OperationType.PARTIAL_SELL, body)
    assert found.reasons == {"dust": 1, "insufficient_balance": 1}
    assert found.float.returned == Decimal("100.00")


def test_rebalance_preview_names_ineligible_participants_and_restricted_assets() -> None:
    app = new_app(chunk_size=2)
    strategy = enrolled(app, ["R1", "R2", "R3", "R4"])
    app.register_participants(PLATFORM, ["R2"], ParticipantStatus.SUSPENDED)
    app.register_participants(PLATFORM, ["R3"], restricted_assets=["SOL"])
    skewed = [
        {"underlying_currency": "BTC", "weight": "0.70"},
        {"underlying_currency": "ETH", "weight": "0.30"},
    ]
    found = assert_same_run(app, strategy, OperationType.REBALANCE, {"allocations": skewed})
    reasons = {p.participant_code: [r.value for r in p.reasons] for p in found.participants}
    assert reasons == {
        "R1": [],
        "R2": ["participant_ineligible"],
        "R3": ["instrument_ineligible"],
        "R4": [],
    }
    sol = next(t for t in found.totals if t.asset == "SOL")
    assert sol.sold > 0 and sol.bought == 0 and sol.block is not None


def test_rebalance_preview_skips_traders_within_tolerance() -> None:
    app = new_app(chunk_size=2)
    strategy = enrolled(app, ["W1", "W2"])
    body = {"allocations": BLUE_CHIP, "drift_tolerance": "0.05"}
    found = assert_same_run(app, strategy, OperationType.REBALANCE, body)
    assert found.counts == {"approved": 0, "rejected": 0, "skipped": 2}
    assert found.reasons == {"within_tolerance": 2}
    assert found.parameters["drift_tolerance"] == "0.05"


def test_liquidation_preview_of_all_is_the_run() -> None:
    app = new_app(chunk_size=2)
    strategy = enrolled(app, ["Q1", "Q2", "Q3"])
    app.register_participants(PLATFORM, ["Q3"], ParticipantStatus.CLOSED)
    found = assert_same_run(app, strategy, OperationType.LIQUIDATION, {"all": True})
    assert found.counts == {"approved": 2, "rejected": 1, "skipped": 0}
    assert all(leg.side.value == "sell" for p in found.participants for leg in p.legs)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (OperationType.ENROLLMENT, {"allocations": BLUE_CHIP}),
        (OperationType.TOP_UP, {"allocations": [{"underlying_currency": "BTC", "weight": "0.5"}]}),
        (OperationType.PARTIAL_SELL, {"participants": funded(["X1"])}),
        (OperationType.REBALANCE, {"allocations": BLUE_CHIP, "drift_tolerance": "2"}),
        (OperationType.LIQUIDATION, {"all": True, "participants": [{"participant_code": "X"}]}),
        (OperationType.ENROLLMENT, {"allocations": BLUE_CHIP, "participants": funded(["X"], "-1")}),
    ],
)
def test_a_preview_is_refused_exactly_as_the_request_would_be(
    kind: OperationType, body: dict[str, Any]
) -> None:
    app = new_app()
    strategy = new_strategy(app)
    with pytest.raises(InvalidRequestError) as previewing:
        preview(app, strategy, kind, body)
    with pytest.raises(InvalidRequestError) as requesting:
        app.request_operation(PLATFORM, strategy.id, uuid4(), kind, body)
    assert previewing.value.code == requesting.value.code
    assert previewing.value.message == requesting.value.message
    assert previewing.value.errors == requesting.value.errors


def test_another_platforms_strategy_is_not_found_by_a_preview() -> None:
    app = new_app()
    strategy = new_strategy(app)
    liquidate = operation_command(OperationType.LIQUIDATION, strategy.id, {"all": True})
    with pytest.raises(StrategyNotFoundError):
        app.preview("platform-b", liquidate, PRICES, AT)
    unknown = operation_command(OperationType.LIQUIDATION, uuid4(), {"all": True})
    with pytest.raises(StrategyNotFoundError):
        app.preview(PLATFORM, unknown, PRICES, AT)


def test_a_rebalance_naming_nobody_previews_its_scope_as_the_roster_holds_it() -> None:
    app = new_app(chunk_size=2)
    strategy = enrolled(app, ["A1", "A2"])
    found = preview(app, strategy, OperationType.REBALANCE, {"allocations": BLUE_CHIP})
    assert [p.participant_code for p in found.participants] == ["A1", "A2"]
    assert found.priced_at == AT and found.prices == PRICES
