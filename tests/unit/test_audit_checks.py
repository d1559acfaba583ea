"""The audit's invariant checks on hand-made Operation records: a clean one passes, and each
kind of tampering is caught and names what it touched."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from domain.audit import (
    ExecutionEvent,
    OperationAudit,
    TraderAudit,
    check_value_conserved,
    describe,
    operation_postings,
    verify_operation,
)
from domain.ledger import VENUE, Posting, check_balanced
from infra.tools.audit_report import diff_rows

D = Decimal
OP = uuid4()
ALICE, BOB, CAROL = uuid4(), uuid4(), uuid4()


def buy(quantity: str, notional: str, price: str = "60000") -> dict[str, str]:
    return {
        "side": "buy",
        "underlying_currency": "BTC",
        "quantity": quantity,
        "notional": notional,
        "price": price,
    }


def settled(instructions: list[dict[str, str]], funded: str) -> dict[str, Any]:
    return {
        "operation_id": OP,
        "instructions": instructions,
        "funded": D(funded),
        "paid_out": D("0"),
    }


def trader(
    trader_id: UUID, instructions: list[dict[str, str]], funded: str, cash: str
) -> TraderAudit:
    events = (
        ExecutionEvent("HoldPlaced", 2, {"operation_id": OP}),
        ExecutionEvent("Settled", 3, settled(instructions, funded)),
    )
    quantity = sum((D(i["quantity"]) for i in instructions), D(0))
    return TraderAudit(trader_id, events, None, {"BTC": quantity}, D(cash))


def clean() -> OperationAudit:
    """Alice and Bob enroll (BTC at 60,000 for both), Carol is rejected by the credit check."""
    return OperationAudit(
        operation_id=OP,
        currency="USD",
        locked_prices={"BTC": D("60000")},
        fills={"BTC": {"side": "buy", "quantity": "0.015", "price": "60000"}},
        residual={},
        totals={"BTC": {"bought": "0.015", "paid": "900.00"}},
        float_moves={"debit": "1500.00", "credit": "0"},
        traders=(
            trader(ALICE, [buy("0.01", "600.00")], "1000.00", "400.00"),
            trader(BOB, [buy("0.005", "300.00")], "500.00", "200.00"),
            TraderAudit(CAROL),
        ),
        rejected=(CAROL,),
        float_settled={"debit": D("1500.00"), "credit": D("0")},
    )


def rules(audit: OperationAudit) -> set[str]:
    return {v.rule for v in verify_operation(audit)}


def with_trader(audit: OperationAudit, index: int, changed: TraderAudit) -> OperationAudit:
    traders = list(audit.traders)
    traders[index] = changed
    return replace(audit, traders=tuple(traders))


def test_a_clean_operation_passes_every_check() -> None:
    assert verify_operation(clean()) == []
    assert check_balanced("op", operation_postings(clean())) == []


def test_a_forged_posting_breaks_conservation() -> None:
    postings = [*operation_postings(clean()), Posting(VENUE, "BTC", D("0.001"))]
    assert [v.rule for v in check_balanced("op", postings)] == ["value_conserved"]


def test_a_forged_settlement_is_caught_by_conservation_totals_and_fills() -> None:
    forged = with_trader(clean(), 0, trader(ALICE, [buy("0.02", "600.00")], "1000.00", "400.00"))
    found = rules(forged)
    assert {"value_conserved", "totals_match", "fills_match"} <= found
    violations = check_value_conserved(forged)
    assert violations and all(str(OP) in v.ids for v in violations)
    assert "BTC nets to" in describe(violations[0])


def test_a_settlement_funded_beyond_the_float_moves_is_caught() -> None:
    forged = with_trader(clean(), 1, trader(BOB, [buy("0.005", "300.00")], "700.00", "400.00"))
    assert {"value_conserved", "float_moves_match"} <= rules(forged)


def test_a_different_price_for_one_trader_is_caught_and_named() -> None:
    forged = with_trader(
        clean(), 1, trader(BOB, [buy("0.005", "300.00", price="59000")], "500.00", "200.00")
    )
    violations = [v for v in verify_operation(forged) if v.rule == "uniform_price"]
    assert len(violations) == 1
    assert str(BOB) in violations[0].ids


def test_a_half_settled_execution_is_caught() -> None:
    open_only = replace(clean().traders[0], events=clean().traders[0].events[:1])
    audit = with_trader(clean(), 0, replace(open_only, held_by=None))
    violations = [v for v in verify_operation(audit) if v.rule == "execution_closed"]
    assert [v.ids for v in violations] == [(str(OP), str(ALICE))]


def test_a_settlement_without_a_hold_is_caught() -> None:
    unheld = replace(clean().traders[1], events=clean().traders[1].events[1:])
    violations = verify_operation(with_trader(clean(), 1, unheld))
    assert [(v.rule, v.ids) for v in violations] == [("execution_closed", (str(OP), str(BOB)))]


def test_an_unreleased_hold_is_caught_on_the_trader_and_the_float() -> None:
    held = replace(clean().traders[0], held_by=OP)
    audit = replace(with_trader(clean(), 0, held), float_holds=(f"{OP}:0",))
    violations = [v for v in verify_operation(audit) if v.rule == "hold_released"]
    assert len(violations) == 2
    assert str(ALICE) in violations[0].ids
    assert f"{OP}:0" in violations[1].detail


def test_a_rejected_trader_that_changed_is_caught() -> None:
    touched = TraderAudit(CAROL, (ExecutionEvent("HoldPlaced", 2, {"operation_id": OP}),))
    violations = verify_operation(with_trader(clean(), 2, touched))
    assert {v.rule for v in violations} == {"rejected_unchanged", "execution_closed"}
    assert all(str(CAROL) in v.ids for v in violations)


def test_a_negative_balance_is_caught() -> None:
    negative = replace(clean().traders[0], cash=D("-0.01"))
    assert rules(with_trader(clean(), 0, negative)) == {"non_negative"}


def test_row_differences_name_table_id_and_column() -> None:
    row_id, gone = uuid4(), uuid4()
    live: dict[UUID, dict[str, Any]] = {
        row_id: {"id": row_id, "cash": D("1.00")},
        gone: {"id": gone},
    }
    replayed: dict[UUID, dict[str, Any]] = {row_id: {"id": row_id, "cash": D("0.00")}}
    found = diff_rows("traders", live, replayed)
    assert [(d.table, d.id, d.column) for d in found] == sorted(
        [("traders", row_id, "cash"), ("traders", gone, "(row)")], key=lambda t: str(t[1])
    )
    changed = next(d for d in found if d.column == "cash")
    assert (changed.live, changed.replayed) == (D("1.00"), D("0.00"))
    assert diff_rows("traders", live, live) == []


def test_a_failed_operation_may_leave_a_filled_block_with_the_venue_but_no_settlement() -> None:
    released = (
        ExecutionEvent("HoldPlaced", 2, {"operation_id": OP}),
        ExecutionEvent("HoldReleased", 3, {"operation_id": OP}),
    )
    failed = replace(
        clean(),
        failed=True,
        totals={},
        float_moves={"debit": "0", "credit": "0"},
        float_settled={},
        traders=(TraderAudit(ALICE, released), TraderAudit(BOB, released)),
    )
    assert verify_operation(failed) == []
    traded = with_trader(failed, 0, clean().traders[0])
    assert "failed_untraded" in rules(traded)


def test_a_house_residual_beyond_one_unit_per_trader_is_flagged() -> None:
    """The issue's case: the house sold 0.0026 BTC it did not have and verify still passed."""
    within = replace(
        clean(),
        fills={"BTC": {"side": "buy", "quantity": "0.01499998", "price": "60000"}},
        residual={"BTC": "0.00000002"},  # two Traders, one unit each at most
        precisions={"BTC": 8},
    )
    assert verify_operation(within) == []
    beyond = replace(
        within,
        fills={"BTC": {"side": "buy", "quantity": "0.0124", "price": "60000"}},
        residual={"BTC": "0.0026"},
    )
    violations = [v for v in verify_operation(beyond) if v.rule == "residual_bounded"]
    assert len(violations) == 1 and "0.0026" in violations[0].detail


def test_a_crossed_asset_carries_exactly_its_recorded_net_within_the_spread() -> None:
    crossed = replace(
        clean(),
        fills={},
        residual={"BTC": "0.015"},
        precisions={"BTC": 8},
        crossed={"BTC": {"net": "0.015", "net_at_ask": "-0.01", "net_at_bid": "0.02"}},
    )
    assert verify_operation(crossed) == []
    outside = replace(
        crossed,
        crossed={"BTC": {"net": "0.015", "net_at_ask": "0.016", "net_at_bid": "0.02"}},
    )
    assert "crossed_residual" in rules(outside)
    other = replace(
        crossed,
        crossed={"BTC": {"net": "0.014", "net_at_ask": "-0.01", "net_at_bid": "0.02"}},
    )
    assert "crossed_residual" in rules(other)


def test_a_partial_sell_paying_other_than_asked_is_flagged() -> None:
    def sold(paid: str) -> TraderAudit:
        events = (
            ExecutionEvent("HoldPlaced", 2, {"operation_id": OP}),
            ExecutionEvent(
                "Settled",
                3,
                {
                    "operation_id": OP,
                    "instructions": [
                        {
                            "side": "sell",
                            "underlying_currency": "BTC",
                            "quantity": "0.0016",
                            "notional": "96.00",
                            "price": "60000",
                        }
                    ],
                    "funded": D("0"),
                    "paid_out": D(paid),
                },
            ),
        )
        return TraderAudit(ALICE, events, None, {"BTC": D("0.0004")}, D("96.00") - D(paid))

    def sale(paid: str) -> OperationAudit:
        return OperationAudit(
            operation_id=OP,
            currency="USD",
            locked_prices={"BTC": D("60000")},
            fills={"BTC": {"side": "sell", "quantity": "0.0016", "price": "60000"}},
            residual={},
            totals={"BTC": {"sold": "0.0016", "received": "96.00"}},
            float_moves={"debit": "0", "credit": paid},
            traders=(sold(paid),),
            float_settled={"debit": D(0), "credit": D(paid)},
            type="partial_sell",
            amounts={ALICE: D("95.00")},
        )

    assert verify_operation(sale("95.00")) == []
    assert rules(sale("90.00")) == {"paid_as_asked"}
