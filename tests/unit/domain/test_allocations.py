from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from domain.allocations import Allocations, parse_allocations
from domain.catalogue import DEFAULT_INSTRUMENTS, Instrument, InstrumentCatalogue, InstrumentStatus
from domain.errors import AllocationInvalidError

CATALOGUE = InstrumentCatalogue.of(
    [*DEFAULT_INSTRUMENTS, Instrument("XRP", "USD", 6, Decimal(1), InstrumentStatus.HALTED)]
)


def parse(raw: Any, max_assets: int = 20) -> Allocations:
    return parse_allocations(raw, quoted_currency="USD", catalogue=CATALOGUE, max_assets=max_assets)


def fields(raw: Any, max_assets: int = 20) -> list[str]:
    with pytest.raises(AllocationInvalidError) as caught:
        parse(raw, max_assets)
    assert caught.value.code == "invalid_allocations"
    return [e.field for e in caught.value.errors]


def test_weights_summing_to_exactly_one_are_accepted_in_order() -> None:
    allocations = parse(
        [
            {"underlying_currency": "BTC", "weight": "0.50"},
            {"underlying_currency": "ETH", "weight": "0.30"},
            {"underlying_currency": "SOL", "weight": "0.20"},
        ]
    )
    assert allocations.assets == ("BTC", "ETH", "SOL")
    assert allocations.weight_of("ETH") == Decimal("0.30")
    assert allocations.weight_of("ADA") == 0
    assert len(allocations) == 3
    assert Allocations.from_list(allocations.as_list()) == allocations


def test_weights_that_do_not_sum_to_one_are_refused_with_the_sum() -> None:
    with pytest.raises(AllocationInvalidError, match=r"sum to 0\.90"):
        parse(
            [
                {"underlying_currency": "BTC", "weight": "0.60"},
                {"underlying_currency": "ETH", "weight": "0.30"},
            ]
        )


def test_a_third_each_is_not_exactly_one() -> None:
    third = {"weight": "0.3333333333"}
    assert fields([{**third, "underlying_currency": a} for a in ("BTC", "ETH", "SOL")]) == [
        "allocations"
    ]


@pytest.mark.parametrize("raw", [None, [], "BTC", {"underlying_currency": "BTC"}])
def test_allocations_must_be_a_non_empty_list(raw: Any) -> None:
    assert fields(raw) == ["allocations"]


def test_every_bad_entry_is_reported_at_once() -> None:
    problems = fields(
        [
            {"underlying_currency": "BTC", "weight": 0.5},
            {"underlying_currency": "BTC", "weight": "0.1"},
            {"underlying_currency": "USD", "weight": "0.1"},
            {"underlying_currency": "DOGE", "weight": "0.1"},
            {"underlying_currency": "XRP", "weight": "0.1"},
            {"underlying_currency": "ETH", "weight": "abc"},
            {"underlying_currency": "SOL", "weight": "0"},
            {"weight": "0.1"},
            "ADA",
        ]
    )
    assert problems == [
        "allocations[0].weight",
        "allocations[1].underlying_currency",
        "allocations[2].underlying_currency",
        "allocations[3].underlying_currency",
        "allocations[4].underlying_currency",
        "allocations[5].weight",
        "allocations[6].weight",
        "allocations[7].underlying_currency",
        "allocations[8]",
    ]


def test_more_assets_than_the_limit_are_refused() -> None:
    raw = [
        {"underlying_currency": "BTC", "weight": "0.5"},
        {"underlying_currency": "ETH", "weight": "0.5"},
    ]
    assert "allocations" in fields(raw, max_assets=1)


def test_weight_above_one_is_refused() -> None:
    assert fields([{"underlying_currency": "BTC", "weight": "1.5"}]) == ["allocations[0].weight"]
