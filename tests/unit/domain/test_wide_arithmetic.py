"""Quantities at 18 decimals of amounts up to the limit, at any price: Python's 28-digit
default could not even round them (the credit check raised InvalidOperation, for ever)."""

from __future__ import annotations

from decimal import Decimal, getcontext, localcontext

from hypothesis import given, settings
from hypothesis import strategies as st

from domain import ids
from domain.catalogue import Instrument
from domain.money import ARITHMETIC, exact, unit
from domain.statuses import OperationStatus, OperationType
from domain.trader import Trader
from tests.unit.domain.flows import BLUE_CHIP, PLATFORM, new_app, new_strategy, run
from tests.unit.domain.strategies import on_grid

MAX_AMOUNT = Decimal("999999999999999.99")
prices = on_grid("0.00000001", "200000", 8)


@settings(max_examples=60, deadline=None)
@given(
    precision=st.integers(min_value=0, max_value=18),
    amount=on_grid("1.00", MAX_AMOUNT, 2),
    btc=prices,
    eth=prices,
    sol=prices,
)
def test_any_amount_at_any_precision_and_price_settles_within_its_budget(
    precision: int, amount: Decimal, btc: Decimal, eth: Decimal, sol: Decimal
) -> None:
    app = new_app(float_usd="0")
    app.deposit_float(PLATFORM, "USD", Decimal("9999999999999999.00"), "FLOAT")
    app.list_instruments(
        [Instrument(asset, "USD", precision, Decimal("0.01")) for asset in ("BTC", "ETH", "SOL")]
    )
    app.register_participants(PLATFORM, ["A"])
    strategy = new_strategy(app)
    market = {"BTC": btc, "ETH": eth, "SOL": sol}
    body = {
        "allocations": BLUE_CHIP,
        "participants": [{"participant_code": "A", "amount": str(amount)}],
    }

    enrolled = run(app, strategy, OperationType.ENROLLMENT, body, market, market)

    assert enrolled.status.terminal
    if enrolled.status is not OperationStatus.SETTLED:
        return  # every leg was dust at this precision and price: nobody to trade
    trader = app.find(ids.trader_id(strategy.id, "A"), Trader)
    assert trader is not None
    with localcontext(ARITHMETIC):
        worth = sum((q * market[a] for a, q in trader.positions.items()), Decimal(0))
        assert trader.cash >= 0 and trader.cash + worth <= amount  # no money made by rounding
        for quantity in trader.positions.values():
            assert quantity == quantity.quantize(unit(precision))  # on the instrument's grid

    liquidated = run(
        app, strategy, OperationType.LIQUIDATION, {"participants": ["A"]}, market, market
    )

    assert liquidated.status is OperationStatus.SETTLED
    after = app.find(ids.trader_id(strategy.id, "A"), Trader)
    assert after is not None and (after.positions, after.cash) == ({}, Decimal(0))


def test_the_callers_context_is_left_as_it_was() -> None:
    before = getcontext().prec

    @exact
    def digits() -> int:
        return getcontext().prec

    assert digits() == 100 and getcontext().prec == before
    assert unit(18) == Decimal("1e-18")
