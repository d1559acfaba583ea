"""The list filters, declared once: the query builder applies exactly the declared ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from projections.filters import EXECUTION_FILTERS, OPERATION_FILTERS, TRADER_FILTERS, conditions


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
