from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

from domain.ledger import (
    FLOAT,
    VENUE,
    Posting,
    balances,
    check_balanced,
    check_non_negative,
    check_uniform_prices,
    imbalances,
    settlement_postings,
    trader_account,
)

D = Decimal
TRADER = uuid4()
BUY = {
    "side": "buy",
    "underlying_currency": "BTC",
    "quantity": "0.01",
    "notional": "600.00",
    "price": "60000",
}
SELL = {
    "side": "sell",
    "underlying_currency": "ETH",
    "quantity": "0.1",
    "notional": "300.00",
    "price": "3000",
}


def test_a_settlement_moves_value_between_accounts_without_making_any() -> None:
    postings = settlement_postings(
        TRADER, "USD", [BUY, SELL], funded=D("1000.00"), paid_out=D("300.00")
    )
    assert imbalances(postings) == {}
    assert check_balanced("op", postings) == []
    book = balances(postings)
    assert book[(trader_account(TRADER), "BTC")] == D("0.01")
    assert book[(VENUE, "ETH")] == D("0.1")
    assert book[(trader_account(TRADER), "USD")] == D("400.00")
    assert book[(FLOAT, "USD")] == D("-700.00")


def test_unbalanced_postings_are_reported_per_unit() -> None:
    forged = [
        *settlement_postings(TRADER, "USD", [BUY], D(0), D(0)),
        Posting(VENUE, "BTC", D("0.001")),
    ]
    (violation,) = check_balanced("op-1", forged)
    assert (violation.rule, violation.subject) == ("value_conserved", "op-1")
    assert "BTC nets to 0.001" in violation.detail


def test_an_instruction_off_the_locked_price_is_caught() -> None:
    locked = {"BTC": D("60000"), "ETH": D("3000")}
    assert check_uniform_prices("op", locked, {"t1": [BUY, SELL]}) == []
    cheap = {**BUY, "price": "59000"}
    (violation,) = check_uniform_prices("op", locked, {"t2": [cheap]})
    assert violation.ids == ("t2",)


def test_negative_positions_or_cash_are_caught() -> None:
    assert check_non_negative("t", {"BTC": D("0.1")}, D(0)) == []
    found = check_non_negative("t", {"BTC": D("-0.1")}, D("-1"))
    assert [v.detail for v in found] == ["BTC is -0.1", "cash is -1"]
