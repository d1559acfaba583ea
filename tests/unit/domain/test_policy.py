"""Rebalancing policies: drift bands, calendars (month ends, ISO weeks, UTC), cooldowns and the
strict reading of a policy as a request sends it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.allocations import Allocation, Allocations
from domain.policy import (
    Calendar,
    DriftBand,
    Frequency,
    Policy,
    PolicyInvalidError,
    parse_policy,
)

D = Decimal
MODEL = Allocations(
    (Allocation("BTC", D("0.50")), Allocation("ETH", D("0.30")), Allocation("SOL", D("0.20")))
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- drift bands ------------------------------------------------------------------------------
def test_an_absolute_band_counts_weight_points_and_its_edge_is_inside() -> None:
    band = DriftBand(absolute=D("0.05"))
    assert band.breaches({"BTC": D("0.56"), "ETH": D("0.27"), "SOL": D("0.17")}, MODEL) == ["BTC"]
    assert not band.outside({"BTC": D("0.55"), "ETH": D("0.27"), "SOL": D("0.18")}, MODEL)


def test_a_relative_band_counts_a_share_of_each_target() -> None:
    band = DriftBand(relative=D("0.20"))
    # SOL 0.20 may move 0.04, ETH 0.30 may move 0.06 (on the edge: inside).
    assert band.breaches({"BTC": D("0.39"), "ETH": D("0.36"), "SOL": D("0.25")}, MODEL) == [
        "BTC",
        "SOL",
    ]
    assert not band.outside({"BTC": D("0.46"), "ETH": D("0.36"), "SOL": D("0.18")}, MODEL)


def test_an_asset_out_of_the_model_breaches_a_relative_band_but_may_sit_in_an_absolute_one() -> (
    None
):
    weights = {"BTC": D("0.49"), "ETH": D("0.30"), "SOL": D("0.20"), "DOGE": D("0.01")}
    assert DriftBand(relative=D("0.5")).breaches(weights, MODEL) == ["DOGE"]
    assert not DriftBand(absolute=D("0.05")).outside(weights, MODEL)


def test_without_a_band_everyone_with_value_is_rebalanced() -> None:
    assert DriftBand().outside({"BTC": D("0.5"), "ETH": D("0.3"), "SOL": D("0.2")}, MODEL)
    assert not DriftBand().outside({}, MODEL)  # nothing held: nothing to rebalance


weights = st.dictionaries(
    st.sampled_from(["BTC", "ETH", "SOL", "DOGE"]),
    st.decimals(min_value=0, max_value=1, places=4),
    min_size=1,
)
bands = st.decimals(min_value=D("0.0001"), max_value=1, places=4)


@given(weights, bands, bands, st.decimals(min_value=0, max_value=1, places=4))
def test_a_wider_band_never_puts_more_traders_outside(
    held: dict[str, Decimal], absolute: Decimal, relative: Decimal, widening: Decimal
) -> None:
    narrow = DriftBand(absolute, relative)
    wide = DriftBand(absolute + widening, relative + widening)
    assert set(wide.breaches(held, MODEL)) <= set(narrow.breaches(held, MODEL))


@given(bands, bands)
def test_a_trader_on_target_is_inside_every_band(absolute: Decimal, relative: Decimal) -> None:
    on_target = {a.asset: a.weight for a in MODEL}
    for band in (DriftBand(absolute), DriftBand(relative=relative), DriftBand(absolute, relative)):
        assert not band.outside(on_target, MODEL)


# -- calendars --------------------------------------------------------------------------------
def test_a_daily_calendar_runs_once_a_day_from_its_time() -> None:
    daily = Calendar(Frequency.DAILY, time(14, 30))
    since = at("2026-12-01T00:00:00")
    assert daily.due(at("2026-12-05T14:29:59"), None, since) is None
    period = daily.due(at("2026-12-05T14:30:00"), None, since)
    assert period is not None and period.key == "2026-12-05"
    assert period.scheduled == at("2026-12-05T14:30:00")
    assert daily.due(at("2026-12-05T23:59:00"), "2026-12-05", since) is None  # already ran
    assert daily.due(at("2026-12-06T14:31:00"), "2026-12-05", since) is not None


def test_a_weekly_calendar_keys_iso_weeks_across_the_new_year() -> None:
    monday = Calendar(Frequency.WEEKLY, time(9, 0), weekday=0)
    period = monday.period(at("2027-01-01T12:00:00"))  # a Friday of ISO week 2026-W53
    assert period.key == "2026-W53"
    assert period.scheduled == at("2026-12-28T09:00:00")
    assert period.ends == at("2027-01-04T00:00:00")


def test_a_policy_set_after_this_periods_time_waits_for_the_next_period() -> None:
    monday = Calendar(Frequency.WEEKLY, time(9, 0), weekday=0)
    set_on_wednesday = at("2026-12-02T10:00:00")
    assert monday.due(at("2026-12-03T10:00:00"), None, set_on_wednesday) is None
    period = monday.due(at("2026-12-07T09:00:00"), None, set_on_wednesday)
    assert period is not None and period.key == "2026-W50"


@pytest.mark.parametrize(
    ("day", "moment", "scheduled"),
    [
        (31, "2027-02-10T00:00:00", "2027-02-28T06:00:00"),  # February, common year
        (31, "2028-02-10T00:00:00", "2028-02-29T06:00:00"),  # leap year
        (30, "2026-12-05T00:00:00", "2026-12-30T06:00:00"),
        (1, "2026-12-31T23:59:59", "2026-12-01T06:00:00"),
    ],
)
def test_a_monthly_day_past_the_months_end_runs_on_its_last_day(
    day: int, moment: str, scheduled: str
) -> None:
    monthly = Calendar(Frequency.MONTHLY, time(6, 0), day=day)
    assert monthly.period(at(moment)).scheduled == at(scheduled)


def test_a_quarterly_calendar_runs_in_the_quarters_first_month() -> None:
    quarterly = Calendar(Frequency.QUARTERLY, time(0, 0), day=31)
    period = quarterly.period(at("2027-05-20T00:00:00"))
    assert period.key == "2027-Q2"
    assert period.scheduled == at("2027-04-30T00:00:00")  # April has 30 days
    assert period.ends == at("2027-07-01T00:00:00")
    assert quarterly.period(at("2026-12-05T00:00:00")).ends == at("2027-01-01T00:00:00")


def test_a_paused_calendar_runs_nothing_before_its_date() -> None:
    paused = Calendar(Frequency.DAILY, time(0, 0), paused_until=date(2027, 1, 1))
    since = at("2026-01-01T00:00:00")
    assert paused.due(at("2026-12-31T23:59:59"), None, since) is None
    assert paused.due(at("2027-01-01T00:00:00"), None, since) is not None


def test_the_time_is_utc_whatever_zone_the_moment_comes_in() -> None:
    daily = Calendar(Frequency.DAILY, time(23, 30))
    in_tokyo = datetime(2026, 12, 6, 8, 30, tzinfo=timezone(timedelta(hours=9)))
    assert daily.period(in_tokyo).key == "2026-12-05"  # 23:30 UTC on the 5th


calendars = st.one_of(
    st.builds(Calendar, st.just(Frequency.DAILY), st.times()),
    st.builds(Calendar, st.just(Frequency.WEEKLY), st.times(), weekday=st.integers(0, 6)),
    st.builds(
        Calendar,
        st.sampled_from([Frequency.MONTHLY, Frequency.QUARTERLY]),
        st.times(),
        day=st.integers(1, 31),
    ),
)
# Hypothesis takes naive bounds and attaches the zone itself.
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(calendars, moments)
def test_every_moment_falls_in_one_period_whose_time_is_inside_it(
    calendar: Calendar, moment: datetime
) -> None:
    period = calendar.period(moment)
    assert moment < period.ends
    assert calendar.period(period.scheduled).key == period.key
    assert calendar.period(period.ends - timedelta(microseconds=1)).key == period.key
    following = calendar.period(period.ends)
    assert following.key != period.key and following.scheduled > period.scheduled


@given(calendars, moments)
def test_a_period_runs_at_most_once(calendar: Calendar, moment: datetime) -> None:
    since = datetime(1999, 1, 1, tzinfo=UTC)
    period = calendar.due(moment, None, since)
    if period is not None:
        assert period.scheduled <= moment
        assert calendar.due(moment, period.key, since) is None


# -- cooldown ---------------------------------------------------------------------------------
def test_a_cooldown_counts_days_since_the_last_rebalance() -> None:
    policy = Policy(cooldown_days=7)
    last = at("2026-12-01T12:00:00")
    assert not policy.cooled_down(last, at("2026-12-08T11:59:59"))
    assert policy.cooled_down(last, at("2026-12-08T12:00:00"))
    assert policy.cooled_down(None, at("2026-12-01T12:00:00"))
    assert Policy().cooled_down(last, last)


# -- reading a policy -------------------------------------------------------------------------
WEEKLY_DRIFT: dict[str, Any] = {
    "drift_band": {"absolute": "0.05", "relative": "0.20"},
    "calendar": {"frequency": "weekly", "weekday": "monday", "time": "14:30"},
    "cooldown_days": 7,
    "cash_buffer": "0.0025",
}


def test_a_policy_reads_back_what_it_shows() -> None:
    policy = parse_policy(WEEKLY_DRIFT)
    assert policy == Policy(
        DriftBand(D("0.05"), D("0.20")),
        Calendar(Frequency.WEEKLY, time(14, 30), weekday=0),
        7,
        D("0.0025"),
    )
    assert parse_policy(policy.as_dict()) == policy
    assert parse_policy({}) == Policy()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cooldown_days": True}, "cooldown_days"),
        ({"cooldown_days": "7"}, "cooldown_days"),
        ({"cooldown_days": 367}, "cooldown_days"),
        ({"cash_buffer": 0.01}, "cash_buffer"),
        ({"cash_buffer": "0.21"}, "cash_buffer"),
        ({"cash_buffer": "1e-2"}, "cash_buffer"),
        ({"drift_band": {}}, "drift_band"),
        ({"drift_band": {"absolute": "0"}}, "drift_band.absolute"),
        ({"drift_band": {"relative": "11"}}, "drift_band.relative"),
        ({"drift_band": {"absolute": "٠.٠٥"}}, "drift_band.absolute"),
        ({"calendar": {"frequency": "hourly"}}, "calendar.frequency"),
        ({"calendar": {}}, "calendar.frequency"),
        ({"calendar": {"frequency": "weekly"}}, "calendar.weekday"),
        ({"calendar": {"frequency": "weekly", "weekday": "Monday"}}, "calendar.weekday"),
        ({"calendar": {"frequency": "daily", "day": 3}}, "calendar.day"),
        ({"calendar": {"frequency": "monthly", "day": 32}}, "calendar.day"),
        ({"calendar": {"frequency": "daily", "time": "24:00"}}, "calendar.time"),
        ({"calendar": {"frequency": "daily", "time": "9:30"}}, "calendar.time"),
        (
            {"calendar": {"frequency": "daily", "paused_until": "2027-02-30"}},
            "calendar.paused_until",
        ),
        ({"schedule": "weekly"}, "policy.schedule"),
        ("weekly", "policy"),
    ],
)
def test_a_bad_policy_is_refused_with_the_field_named(body: object, field: str) -> None:
    with pytest.raises(PolicyInvalidError) as refused:
        parse_policy(body)
    assert refused.value.code == "invalid_policy"
    assert field in [e.field for e in refused.value.errors]


def test_every_problem_of_a_policy_is_named_at_once() -> None:
    with pytest.raises(PolicyInvalidError) as refused:
        parse_policy({"cooldown_days": -1, "cash_buffer": "0.5", "calendar": {"frequency": "x"}})
    assert {e.field for e in refused.value.errors} == {
        "cooldown_days",
        "cash_buffer",
        "calendar.frequency",
    }
