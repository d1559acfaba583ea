from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from domain.errors import ParticipantsInvalidError
from domain.requests import (
    Limits,
    ParticipantOrder,
    parse_funded_participants,
    parse_named_participants,
)

LIMITS = Limits(max_participants=3)


def funded(raw: Any) -> tuple[ParticipantOrder, ...]:
    return parse_funded_participants(raw, currency_precision=2, limits=LIMITS)


def bad_fields(raw: Any) -> list[str]:
    with pytest.raises(ParticipantsInvalidError) as caught:
        funded(raw)
    return [e.field for e in caught.value.errors]


def test_funded_participants_parse_amounts_and_flags() -> None:
    orders = funded(
        [
            {"participant_code": "A1", "amount": "100.50", "auto_rebalance": True},
            {"participant_code": "B2", "amount": "7"},
        ]
    )
    assert orders == (
        ParticipantOrder("A1", Decimal("100.50"), True),
        ParticipantOrder("B2", Decimal("7"), False),
    )
    assert ParticipantOrder.from_dict(orders[0].as_dict()) == orders[0]


def test_trailing_zeros_beyond_the_minor_unit_are_still_whole_cents() -> None:
    assert funded([{"participant_code": "A", "amount": "1.500"}])[0].amount == Decimal("1.500")


@pytest.mark.parametrize(
    ("amount", "field"),
    [
        ("abc", "participants[0].amount"),
        ("0", "participants[0].amount"),
        ("-5", "participants[0].amount"),
        ("1.001", "participants[0].amount"),
        (10, "participants[0].amount"),
        (None, "participants[0].amount"),
        ("NaN", "participants[0].amount"),
        ("1e26", "participants[0].amount"),  # past Decimal's 28 digits: quantize would raise
        ("1E+999999", "participants[0].amount"),
        ("1_000", "participants[0].amount"),
        ("\uff11\uff10", "participants[0].amount"),  # fullwidth digits
        ("+1", "participants[0].amount"),
        ("1.", "participants[0].amount"),
        (" 7 ", "participants[0].amount"),
        ("1e2", "participants[0].amount"),
    ],
)
def test_bad_amounts_name_their_field(amount: Any, field: str) -> None:
    entry: dict[str, Any] = {"participant_code": "A"}
    if amount is not None:
        entry["amount"] = amount
    assert bad_fields([entry]) == [field]


def test_duplicates_codes_and_flags_are_all_reported() -> None:
    problems = bad_fields(
        [
            {"participant_code": "A", "amount": "1"},
            {"participant_code": "A", "amount": "1"},
            {"participant_code": " ", "amount": "1"},
        ]
    )
    assert problems == ["participants[2]", "participants"]
    assert bad_fields([{"participant_code": "A", "amount": "1", "auto_rebalance": "yes"}]) == [
        "participants[0].auto_rebalance"
    ]
    assert bad_fields(["A"]) == ["participants[0]"]
    assert bad_fields([{"participant_code": "x" * 65, "amount": "1"}]) == ["participants[0]"]
    for unprintable in ("A\x00", "\x07", "A\u200bB"):  # PostgreSQL text cannot hold a NUL
        assert bad_fields([{"participant_code": unprintable, "amount": "1"}]) == ["participants[0]"]


def test_more_participants_than_the_limit_are_refused_with_advice() -> None:
    with pytest.raises(ParticipantsInvalidError, match="split the request"):
        funded([{"participant_code": str(i), "amount": "1"} for i in range(4)])


@pytest.mark.parametrize("raw", [None, [], "A", {}])
def test_participants_must_be_a_non_empty_list(raw: Any) -> None:
    assert bad_fields(raw) == ["participants"]


def test_named_participants_accept_codes_or_objects() -> None:
    orders = parse_named_participants(["A", {"participant_code": "B"}], limits=LIMITS)
    assert [o.code for o in orders] == ["A", "B"]
    with pytest.raises(ParticipantsInvalidError):
        parse_named_participants(["A", "A"], limits=LIMITS)
    with pytest.raises(ParticipantsInvalidError):
        parse_named_participants([{"code": "A"}], limits=LIMITS)


def test_error_message_lists_at_most_ten_problems() -> None:
    limits = Limits(max_participants=50)
    with pytest.raises(ParticipantsInvalidError, match=r"and 5 more"):
        parse_funded_participants(
            [{"participant_code": str(i), "amount": "x"} for i in range(15)],
            currency_precision=2,
            limits=limits,
        )
