"""The codes every way in names things by (domain.codes), and the application service applying
them to the admin commands: instruments, participants, float deposits."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import ids
from domain.catalogue import Instrument
from domain.codes import (
    MAX_ASSET_LENGTH,
    MAX_CODE_LENGTH,
    MAX_REFERENCE_LENGTH,
    asset_problem,
    check_asset,
    check_reference,
    code_problem,
    reference_problem,
)
from domain.errors import IdempotencyConflictError, InvalidRequestError
from domain.float_account import FloatAccount
from domain.reference import Participant
from domain.services import Trading

PLATFORM = "PLAT01"
printable = st.characters(
    codec="utf-8", categories=("L", "M", "N", "P", "S"), include_characters=" "
)
unprintable = st.characters(codec="utf-8", categories=("Cc", "Cf", "Zl", "Zp"))


@given(st.text(printable, min_size=1, max_size=MAX_CODE_LENGTH))
def test_printable_trimmed_codes_up_to_the_limit_are_codes(code: str) -> None:
    code = code.strip()
    if code:
        assert code_problem(code) is None


@given(st.text(printable, max_size=20), unprintable, st.text(printable, max_size=20))
def test_a_code_with_any_unprintable_character_is_refused(
    before: str, bad: str, after: str
) -> None:
    code = f"X{before}{bad}{after}X"
    assert code_problem(code) is not None
    assert reference_problem(code) is not None
    assert asset_problem(code) is not None


@pytest.mark.parametrize(
    "raw", ["", "   ", " P1", "P1 ", "P" * (MAX_CODE_LENGTH + 1), None, 7, ["P1"]]
)
def test_empty_padded_long_or_non_text_codes_are_refused(raw: object) -> None:
    assert code_problem(raw) is not None


def test_references_may_be_longer_than_codes_but_are_bounded() -> None:
    assert reference_problem("R" * MAX_REFERENCE_LENGTH) is None
    assert reference_problem("R" * (MAX_REFERENCE_LENGTH + 1)) is not None
    with pytest.raises(InvalidRequestError) as refused:
        check_reference("W\x00")
    assert [e.field for e in refused.value.errors] == ["reference"]


@given(st.from_regex(rf"\A[A-Z0-9]{{1,{MAX_ASSET_LENGTH}}}\Z"))
def test_upper_case_ascii_letters_and_digits_are_asset_codes(asset: str) -> None:
    assert asset_problem(asset) is None


@given(st.text(max_size=MAX_ASSET_LENGTH + 4))
def test_anything_else_is_not_an_asset_code(asset: str) -> None:
    is_asset = 1 <= len(asset) <= MAX_ASSET_LENGTH and all(
        c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" for c in asset
    )
    assert (asset_problem(asset) is None) is is_asset


def test_an_asset_refusal_names_its_field() -> None:
    with pytest.raises(InvalidRequestError) as refused:
        check_asset("BT\x00C", "instruments[3].asset")
    assert [e.field for e in refused.value.errors] == ["instruments[3].asset"]


@pytest.mark.parametrize("asset", ["BT\x00C", "btc", "BTC ", "ＢTC", "B" * 17, ""])
def test_the_catalogue_refuses_an_asset_that_is_not_a_code(asset: str) -> None:
    app = Trading()
    with pytest.raises(InvalidRequestError):
        app.list_instruments([Instrument(asset, "USD", 8, Decimal("1.00"))])
    assert all(i.asset != asset for i in app.catalogue().instruments.values())


@pytest.mark.parametrize(
    ("codes", "restricted"),
    [(["OK", "P\x00"], []), (["OK", " P"], []), (["OK"], ["SOL", "s\x00l"]), (["OK"], ["sol"])],
)
def test_participants_need_printable_codes_and_asset_codes_as_restrictions(
    codes: list[str], restricted: list[str]
) -> None:
    app = Trading()
    with pytest.raises(InvalidRequestError):
        app.register_participants(PLATFORM, codes, restricted_assets=restricted)
    assert app.find(ids.participant_id(PLATFORM, "OK"), Participant) is None


def test_a_deposit_reference_credits_once_and_conflicts_for_another_amount() -> None:
    app = Trading()
    account, credited = app.deposit_float(PLATFORM, "USD", Decimal("100.00"), "WIRE-1")
    assert credited and account.balance == Decimal("100.00")
    again, credited = app.deposit_float(PLATFORM, "USD", Decimal("100.00"), "WIRE-1")
    assert not credited and again.balance == Decimal("100.00")
    with pytest.raises(IdempotencyConflictError) as conflict:
        app.deposit_float(PLATFORM, "USD", Decimal("1.00"), "WIRE-1")
    assert [e.field for e in conflict.value.errors] == ["reference"]
    other, credited = app.deposit_float(PLATFORM, "USD", Decimal("1.00"), "WIRE-2")
    assert credited and other.balance == Decimal("101.00")
    # the key is per float account: EUR's WIRE-1 is another wire
    eur, credited = app.deposit_float(PLATFORM, "EUR", Decimal("5.00"), "WIRE-1")
    assert credited and eur.balance == Decimal("5.00")
    stored = app.find(ids.float_account_id(PLATFORM, "USD"), FloatAccount)
    assert stored is not None and stored.balance == Decimal("101.00")


@pytest.mark.parametrize("reference", ["", " W", "W\x00", "R" * 129])
def test_a_deposit_without_a_usable_reference_is_refused(reference: str) -> None:
    app = Trading()
    with pytest.raises(InvalidRequestError):
        app.deposit_float(PLATFORM, "USD", Decimal("1.00"), reference)
    assert app.find(ids.float_account_id(PLATFORM, "USD"), FloatAccount) is None
