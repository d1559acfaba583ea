from __future__ import annotations

from decimal import Decimal

import pytest

from domain.catalogue import (
    DEFAULT_INSTRUMENTS,
    Instrument,
    InstrumentCatalogue,
    InstrumentStatus,
    fiat_precision,
)
from domain.eligibility import ParticipantProfile, ParticipantStatus
from domain.errors import AmountInvalidError, CurrencyUnsupportedError, InstrumentNotFoundError
from domain.legs import Holdings, Leg
from domain.money import Money, Quantity, ceil_to, floor_to, parse_decimal, unit
from domain.statuses import OperationStatus, Side


def test_units_follow_precision() -> None:
    assert unit(2) == Decimal("0.01")
    assert unit(8) == Decimal("0.00000001")
    assert unit(0) == Decimal(1)


def test_floor_and_ceil_round_towards_their_side_even_for_negatives() -> None:
    assert floor_to(Decimal("1.239"), 2) == Decimal("1.23")
    assert ceil_to(Decimal("1.231"), 2) == Decimal("1.24")
    assert floor_to(Decimal("-1.231"), 2) == Decimal("-1.24")
    assert ceil_to(Decimal("1.23"), 2) == Decimal("1.23")


#: Every form the issue saw settled as an amount, and its neighbours: Python's Decimal reads
#: them all, a platform's own systems may not.
LOOSE = [
    "1_000",
    "\u0661\u0660\u0660",  # Arabic-Indic 100
    "\uff11\uff10\uff10",  # fullwidth 100
    "+1",
    "1.",
    ".5",
    " 7 ",
    "7\n",
    "1e2",
    "1E2",
    "0x10",
    "1,5",
    "1.2.3",
    "-1",
    "--1",
    "",
]


@pytest.mark.parametrize(
    "raw", ["abc", "1e", 1.5, True, None, 7, "NaN", "Infinity", "-Infinity", *LOOSE]
)
def test_amounts_that_are_not_plain_ascii_decimal_strings_are_refused(raw: object) -> None:
    with pytest.raises(AmountInvalidError) as caught:
        parse_decimal(raw, "amount")
    assert caught.value.code == "invalid_amount"
    assert caught.value.errors[0].field == "amount"


def test_plain_decimal_strings_parse_exactly_and_a_sign_only_where_allowed() -> None:
    assert parse_decimal("100.10", "amount") == Decimal("100.10")
    assert parse_decimal("0.000000000000000001", "amount") == Decimal("1E-18")
    assert parse_decimal("-1.25", "price", signed=True) == Decimal("-1.25")
    with pytest.raises(AmountInvalidError):
        parse_decimal("+1.25", "price", signed=True)
    assert parse_decimal(Decimal("7"), "amount") == Decimal(7)  # the domain's own values


def test_an_echoed_refused_value_is_cut_short() -> None:
    with pytest.raises(AmountInvalidError) as caught:
        parse_decimal("9" * 100_000 + "x", "amount")
    assert len(caught.value.message) < 200


def test_money_adds_only_within_one_currency() -> None:
    assert Money(Decimal("1.10"), "USD") + Money(Decimal("2.05"), "USD") == Money(
        Decimal("3.15"), "USD"
    )
    assert Money(Decimal("3"), "USD") - Money(Decimal("1"), "USD") == Money(Decimal("2"), "USD")
    assert str(Money(Decimal("1.00"), "USD")) == "1.00 USD"
    with pytest.raises(ValueError, match="cannot mix"):
        Money(Decimal(1), "USD") + Money(Decimal(1), "EUR")
    assert str(Quantity(Decimal("0.5"), "BTC")) == "0.5 BTC"


def test_fiat_precision_is_known_for_supported_currencies_only() -> None:
    assert fiat_precision("USD") == 2
    assert fiat_precision("JPY") == 0
    with pytest.raises(CurrencyUnsupportedError) as caught:
        fiat_precision("XYZ")
    assert "USD" in caught.value.message


def test_catalogue_finds_instruments_by_asset_and_currency() -> None:
    catalogue = InstrumentCatalogue.of(DEFAULT_INSTRUMENTS)
    btc = catalogue.get("BTC", "USD")
    assert btc.symbol == "BTC/USD"
    assert catalogue.precision("BTC", "USD") == 8
    assert catalogue.find("BTC", "JPY") is None
    with pytest.raises(InstrumentNotFoundError):
        catalogue.get("DOGE", "USD")


def test_instrument_round_trips_through_its_stored_form() -> None:
    halted = Instrument("BTC", "USD", 8, Decimal("5.00"), InstrumentStatus.HALTED)
    assert Instrument.from_dict(halted.as_dict()) == halted
    assert not halted.tradable


def test_participant_profile_knows_restricted_assets_and_status() -> None:
    profile = ParticipantProfile("P1", ParticipantStatus.ACTIVE, frozenset({"SOL"}))
    assert profile.may_trade
    assert not profile.may_hold("SOL")
    assert not ParticipantProfile("P2", ParticipantStatus.SUSPENDED).may_trade


def test_legs_round_trip_and_holdings_apply_them() -> None:
    buy = Leg(Side.BUY, "BTC", Decimal("0.5"), Decimal("100.00"))
    sell = Leg(Side.SELL, "ETH", Decimal("1"), Decimal("30.00"))
    assert Leg.from_dict(buy.as_dict()) == buy
    before = Holdings({"ETH": Decimal("1")}, Decimal("0"))
    after = before.after((buy, sell), cash_in=Decimal("100.00"), cash_out=Decimal("30.00"))
    assert after.positions == {"BTC": Decimal("0.5")}
    assert after.cash == Decimal("0.00")
    assert before.value({"ETH": Decimal("30")}) == Decimal("30")


def test_only_final_operation_statuses_are_terminal() -> None:
    assert {s for s in OperationStatus if s.terminal} == {
        OperationStatus.SETTLED,
        OperationStatus.SKIPPED,
        OperationStatus.FAILED,
        OperationStatus.CANCELLED,
    }
