"""The allotment at the locked prices: float in request order, partial sells covered at the
locked price or refused whole, and blocks that are the Traders' exact net."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from domain.allocations import Allocation, Allocations
from domain.allotment import (
    Entry,
    allot,
    block_orders,
    float_approvals,
    net_quantities,
    pack_entries,
    unpack_entries,
)
from domain.calculators import Market
from domain.catalogue import DEFAULT_INSTRUMENTS, Instrument, InstrumentCatalogue
from domain.credit import OperationTerms, Outcome
from domain.legs import Holdings
from domain.pricing import BlockOrder
from domain.requests import ParticipantOrder
from domain.statuses import OperationType, Reason, Side

D = Decimal
BTC = Allocations((Allocation("BTC", D(1)),))
CATALOGUE = InstrumentCatalogue.of(DEFAULT_INSTRUMENTS)


def market(btc: str) -> Market:
    return Market("USD", 2, CATALOGUE, {"BTC": D(btc)})


def buyers(*amounts: str) -> list[Entry]:
    return [Entry(ParticipantOrder(f"P{i}", D(a))) for i, a in enumerate(amounts)]


def test_the_float_approves_buyers_first_come_first_served_in_request_order() -> None:
    entries = buyers("100", "200", "150", "50")
    flags, total = float_approvals(OperationType.ENROLLMENT, entries, D("250"))
    assert (flags, total) == ([True, False, True, False], D("250"))
    allotted = allot(
        OperationTerms(uuid4(), OperationType.ENROLLMENT, BTC), entries, market("100"), D("250")
    )
    assert [a.outcome for a in allotted] == [
        Outcome.APPROVED,
        Outcome.REJECTED,
        Outcome.APPROVED,
        Outcome.REJECTED,
    ]
    assert allotted[1].reasons == (Reason.INSUFFICIENT_FUNDS,)
    assert sum(a.funded for a in allotted) == D("250")


def test_sells_need_no_float() -> None:
    entries = [Entry(ParticipantOrder("S", D("10")), Holdings({"BTC": D(1)}))]
    assert float_approvals(OperationType.PARTIAL_SELL, entries, D(0)) == ([True], D(0))


def test_a_partial_sell_no_longer_covered_at_the_locked_price_is_rejected_whole() -> None:
    terms = OperationTerms(uuid4(), OperationType.PARTIAL_SELL, BTC)
    covered = Entry(ParticipantOrder("A", D("95.00")), Holdings({"BTC": D("0.002")}))
    short = Entry(ParticipantOrder("B", D("95.00")), Holdings({"BTC": D("0.00158")}))
    at_lock = allot(terms, [covered, short], market("60000.00"))
    assert at_lock[0].outcome is Outcome.APPROVED and at_lock[0].paid_out == D("95.00")
    assert (at_lock[1].outcome, at_lock[1].reasons, at_lock[1].legs) == (
        Outcome.REJECTED,
        (Reason.INSUFFICIENT_BALANCE,),
        (),
    )
    # the block is the covering Trader's own quantity: nothing for the refused one
    assert block_orders(net_quantities(at_lock)) == {
        "BTC": BlockOrder("BTC", Side.SELL, at_lock[0].legs[0].quantity)
    }


def test_the_block_is_the_net_of_every_traders_own_rounded_quantity() -> None:
    coarse = InstrumentCatalogue.of([Instrument("BTC", "USD", 0, D("1.00"))])
    at_30 = Market("USD", 2, coarse, {"BTC": D("30")})
    terms = OperationTerms(uuid4(), OperationType.ENROLLMENT, BTC)
    allotted = allot(terms, buyers("50.00", "50.00", "59.99", "60.00"), at_30, D("1000"))
    assert [a.legs[0].quantity for a in allotted] == [D(1), D(1), D(1), D(2)]
    assert block_orders(net_quantities(allotted)) == {"BTC": BlockOrder("BTC", Side.BUY, D(5))}


# Any Decimal the store can hold: exponents and trailing zeros are kept by the packing.
_decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 30
)
_entries = st.lists(
    st.builds(
        Entry,
        st.builds(
            ParticipantOrder,
            st.text(min_size=1, max_size=12),
            st.none() | _decimals,
            st.booleans(),
        ),
        st.builds(
            Holdings, st.dictionaries(st.sampled_from(["BTC", "ETH", "SOL"]), _decimals), _decimals
        ),
    ),
    max_size=8,
)


@given(_entries)
def test_packed_entries_unpack_to_the_same_entries_digit_for_digit(entries: list[Entry]) -> None:
    unpacked = unpack_entries(pack_entries(entries))
    assert unpacked == tuple(entries)
    for before, after in zip(entries, unpacked, strict=True):
        assert str(after.holdings.cash) == str(before.holdings.cash)
        assert {a: str(q) for a, q in after.holdings.positions.items()} == {
            a: str(q) for a, q in before.holdings.positions.items()
        }
