"""The list filters, declared once: the query builder applies exactly the declared ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from projections.filters import (
    DRIFT_THRESHOLD,
    EXECUTION_FILTERS,
    OPERATION_FILTERS,
    TRADER_FILTERS,
    conditions,
)


def test_a_filter_the_list_does_not_declare_is_refused_not_ignored() -> None:
    with pytest.raises(TypeError, match="created_gte"):
        conditions(EXECUTION_FILTERS, {"status": "settled", "created_gte": datetime.now(UTC)})


def test_each_declared_filter_gives_its_condition_and_an_absent_one_none() -> None:
    given = {"type": "top_up", "created_lt": datetime(2026, 1, 1, 12)}  # noqa: DTZ001
    assert conditions(OPERATION_FILTERS, given) == [
        ("strategy_id", "=", None),
        ("type", "=", "top_up"),
        ("status", "=", None),
        ("request_id", "=", None),
        ("created_at", ">=", None),
        ("created_at", "<", datetime(2026, 1, 1, 12, tzinfo=UTC)),  # a naive time is UTC
    ]


def test_a_time_bound_past_the_utc_range_is_clamped_to_its_end() -> None:
    late = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14)))
    (*_, since, _before) = conditions(OPERATION_FILTERS, {"created_gte": late})
    assert since == ("created_at", ">=", datetime.max.replace(tzinfo=UTC))


def test_a_flag_filter_reads_its_two_spellings_as_booleans() -> None:
    (*_, flag) = conditions(TRADER_FILTERS, {"auto_rebalance": "false"})
    assert flag == ("auto_rebalance", "=", False)
    (*_, flag) = conditions(TRADER_FILTERS, {"auto_rebalance": "true"})
    assert flag == ("auto_rebalance", "=", True)


def test_the_drift_filters_are_left_to_the_traders_query_not_made_column_conditions() -> None:
    given = {"strategy_id": None, "drift_gte": "0.05", "drift": "outside"}
    assert [c[0] for c in conditions(TRADER_FILTERS, given)] == [
        "strategy_id",
        "participant_code",
        "auto_rebalance",
    ]
    declared = {f.query or f.name: f for f in TRADER_FILTERS}
    assert declared["drift[gte]"].computed and declared["drift"].computed
    assert declared["drift"].choices == ("outside",)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("0", True),
        ("0.05", True),
        ("0.000000000000000001", True),
        ("1", True),
        ("1.000", True),
        ("1.01", False),
        ("2", False),
        ("-0.05", False),
        (".05", False),
        ("0.", False),
        ("5e-2", False),
        ("0.0000000000000000001", False),  # more than 18 places
        (" 0.05", False),
        ("NaN", False),
        ("0,05", False),
    ],
)
def test_a_drift_threshold_is_a_decimal_string_from_zero_to_one(value: str, accepted: bool) -> None:
    assert bool(re.fullmatch(DRIFT_THRESHOLD, value)) is accepted
