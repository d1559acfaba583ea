"""Rebalancing policies: when a Strategy rebalances its Traders by itself, and which of them.

A policy (issue 18) has four parts, each optional:
- a **drift band**: a Trader is outside it when any asset's weight is more than `absolute`
  (weight points: 0.05 is 5 percentage points) off its target, or more than `relative` of its
  target off it (0.20: a 30% asset below 24% or above 36%). An asset held outside the model
  has a target of 0, so any of it is outside a relative band. On the edge is inside. Without
  a band every Trader is rebalanced.
- a **calendar**: daily, weekly (a weekday), monthly or quarterly (a day of the month, the
  last day in a shorter month; for quarters, of the quarter's first month), at a UTC time
  (no daylight saving: UTC has none), optionally paused until a date. Each run belongs to a
  period (a day, an ISO week, a month, a quarter) and a period runs at most once: from its
  scheduled time until it ends, so a scheduler down at that moment catches up within the
  period; a period missed entirely is not made up. Without a calendar nothing runs by itself.
- a **cooldown**: no automatic rebalance of a Trader within that many days of its last one.
- a **cash buffer**: the share of each Trader's value (0 to 20%) every buy leaves in cash.

Everything here is pure: the scheduler and the read models ask it with the time and weights
they have.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

from domain.allocations import Allocations
from domain.errors import FieldError, InvalidRequestError
from domain.money import ZERO, parse_decimal

#: Bounds a policy's numbers must keep.
MAX_ABSOLUTE_BAND = Decimal(1)
MAX_RELATIVE_BAND = Decimal(10)
MAX_CASH_BUFFER = Decimal("0.20")
MAX_COOLDOWN_DAYS = 366

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class PolicyInvalidError(InvalidRequestError):
    """Raised when a rebalancing policy breaks a rule (an unknown key, a bound, a calendar
    that names no day)."""

    code = "invalid_policy"


class Frequency(Enum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


@dataclass(frozen=True)
class DriftBand:
    absolute: Decimal | None = None
    relative: Decimal | None = None

    def breaches(self, weights: Mapping[str, Decimal], model: Allocations) -> list[str]:
        """The assets whose weight is outside the band, in model order then the others'."""
        targets = {a.asset: a.weight for a in model}
        assets = [*targets, *sorted(a for a in weights if a not in targets)]
        return [a for a in assets if self._outside(weights.get(a, ZERO), targets.get(a, ZERO))]

    def outside(self, weights: Mapping[str, Decimal], model: Allocations) -> bool:
        """Whether a Trader with these current weights needs a rebalance. A Trader with no
        value has no weights and is never outside; with no band at all, every other is."""
        if not weights:
            return False
        if self.absolute is None and self.relative is None:
            return True
        return bool(self.breaches(weights, model))

    def _outside(self, weight: Decimal, target: Decimal) -> bool:
        gap = abs(weight - target)
        if self.absolute is not None and gap > self.absolute:
            return True
        return self.relative is not None and gap > self.relative * target

    def as_dict(self) -> dict[str, str]:
        return {
            key: str(value)
            for key, value in (("absolute", self.absolute), ("relative", self.relative))
            if value is not None
        }


@dataclass(frozen=True)
class Period:
    """One period of a calendar: its key (unique per Strategy, what makes a run's request id
    deterministic) and the moment it is scheduled to run."""

    key: str
    scheduled: datetime
    ends: datetime


@dataclass(frozen=True)
class Calendar:
    frequency: Frequency
    at: time = time(0, 0)
    #: 0 (Monday) to 6 (Sunday), weekly only.
    weekday: int | None = None
    #: 1 to 31, monthly and quarterly only; beyond a month's last day, its last day.
    day: int | None = None
    paused_until: date | None = None

    def period(self, moment: datetime) -> Period:
        """The period `moment` (UTC) falls in."""
        moment = moment.astimezone(UTC)
        today = moment.date()
        if self.frequency is Frequency.DAILY:
            return Period(today.isoformat(), self._at(today), _midnight(today + timedelta(days=1)))
        if self.frequency is Frequency.WEEKLY:
            assert self.weekday is not None
            year, week, _ = today.isocalendar()
            start = today - timedelta(days=today.weekday())
            return Period(
                f"{year}-W{week:02d}",
                self._at(start + timedelta(days=self.weekday)),
                _midnight(start + timedelta(days=7)),
            )
        assert self.day is not None
        if self.frequency is Frequency.MONTHLY:
            first = today.replace(day=1)
            return Period(
                f"{today.year}-{today.month:02d}",
                self._on_day(first),
                _midnight(_add_months(first, 1)),
            )
        quarter = (today.month - 1) // 3
        first = date(today.year, quarter * 3 + 1, 1)
        return Period(
            f"{today.year}-Q{quarter + 1}", self._on_day(first), _midnight(_add_months(first, 3))
        )

    def due(self, now: datetime, last_run: str | None, since: datetime) -> Period | None:
        """The period to run now, if any: its scheduled time has come, and came after the
        policy took effect (`since`: a weekly Monday policy set on a Wednesday first runs
        the next Monday), it has not run yet (`last_run` is the key of the latest period
        that did), and the calendar is not paused."""
        if self.paused_until is not None and now.astimezone(UTC) < _midnight(self.paused_until):
            return None
        period = self.period(now)
        if not since <= period.scheduled <= now or period.key == last_run:
            return None
        return period

    def _at(self, day: date) -> datetime:
        return datetime.combine(day, self.at, tzinfo=UTC)

    def _on_day(self, first: date) -> datetime:
        assert self.day is not None
        last = calendar.monthrange(first.year, first.month)[1]
        return self._at(first.replace(day=min(self.day, last)))

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "frequency": self.frequency.value,
            "time": self.at.strftime("%H:%M"),
        }
        if self.weekday is not None:
            shown["weekday"] = WEEKDAYS[self.weekday]
        if self.day is not None:
            shown["day"] = self.day
        if self.paused_until is not None:
            shown["paused_until"] = self.paused_until.isoformat()
        return shown


@dataclass(frozen=True)
class Policy:
    drift_band: DriftBand | None = None
    calendar: Calendar | None = None
    cooldown_days: int = 0
    cash_buffer: Decimal = ZERO

    def cooled_down(self, last_rebalanced: datetime | None, now: datetime) -> bool:
        """Whether a Trader last rebalanced at `last_rebalanced` (manually or not) may be
        rebalanced automatically at `now`."""
        if last_rebalanced is None or not self.cooldown_days:
            return True
        return now - last_rebalanced >= timedelta(days=self.cooldown_days)

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "cooldown_days": self.cooldown_days,
            "cash_buffer": str(self.cash_buffer),
        }
        if self.drift_band is not None:
            shown["drift_band"] = self.drift_band.as_dict()
        if self.calendar is not None:
            shown["calendar"] = self.calendar.as_dict()
        return shown


def parse_policy(raw: object) -> Policy:
    """Validate a policy as a request sends it (the shape `Policy.as_dict` gives back).

    Strict like every way in: decimal strings for shares, integers that are not booleans,
    ASCII dates and times, no unknown key. Every problem is collected, so one refusal names
    them all."""
    errors: list[FieldError] = []
    body = _object(
        raw, "policy", {"drift_band", "calendar", "cooldown_days", "cash_buffer"}, errors
    )
    band = calendar_ = None
    if body.get("drift_band") is not None:
        band = _band(body["drift_band"], errors)
    if body.get("calendar") is not None:
        calendar_ = _calendar(body["calendar"], errors)
    cooldown = _integer(body.get("cooldown_days", 0), "cooldown_days", 0, MAX_COOLDOWN_DAYS, errors)
    buffer = _share(body.get("cash_buffer", "0"), "cash_buffer", MAX_CASH_BUFFER, errors, zero=True)
    if errors:
        raise PolicyInvalidError(
            "policy is invalid: " + "; ".join(f"{e.field} {e.message}" for e in errors),
            errors=tuple(errors),
        )
    return Policy(band, calendar_, cooldown or 0, buffer or ZERO)


def _band(raw: object, errors: list[FieldError]) -> DriftBand:
    body = _object(raw, "drift_band", {"absolute", "relative"}, errors)
    absolute = relative = None
    if body.get("absolute") is not None:
        absolute = _share(body["absolute"], "drift_band.absolute", MAX_ABSOLUTE_BAND, errors)
    if body.get("relative") is not None:
        relative = _share(body["relative"], "drift_band.relative", MAX_RELATIVE_BAND, errors)
    if isinstance(raw, Mapping) and "absolute" not in raw and "relative" not in raw:
        errors.append(FieldError("drift_band", "needs absolute, relative or both"))
    return DriftBand(absolute, relative)


def _calendar(raw: object, errors: list[FieldError]) -> Calendar | None:
    keys = {"frequency", "time", "weekday", "day", "paused_until"}
    body = _object(raw, "calendar", keys, errors)
    if not isinstance(raw, Mapping):  # already refused; an empty one needs its frequency
        return None
    try:
        frequency = Frequency(body.get("frequency"))
    except ValueError:
        choices = ", ".join(f.value for f in Frequency)
        errors.append(FieldError("calendar.frequency", f"must be one of {choices}"))
        return None
    at = _time(body.get("time", "00:00"), errors)
    weekday = day = None
    if frequency is Frequency.WEEKLY:
        name = body.get("weekday")
        if name not in WEEKDAYS:
            errors.append(FieldError("calendar.weekday", f"must be one of {', '.join(WEEKDAYS)}"))
        else:
            weekday = WEEKDAYS.index(str(name))
    elif "weekday" in body:
        errors.append(FieldError("calendar.weekday", "is for a weekly calendar only"))
    if frequency in (Frequency.MONTHLY, Frequency.QUARTERLY):
        day = _integer(body.get("day"), "calendar.day", 1, 31, errors)
    elif "day" in body:
        errors.append(FieldError("calendar.day", "is for a monthly or quarterly calendar only"))
    paused = _date(body["paused_until"], errors) if body.get("paused_until") is not None else None
    if at is None:
        return None
    return Calendar(frequency, at, weekday, day, paused)


def _object(raw: object, field: str, keys: set[str], errors: list[FieldError]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        errors.append(FieldError(field, "must be an object"))
        return {}
    for key in sorted(str(k) for k in raw if k not in keys):
        shown = key[:40] if key.isprintable() and key.isascii() else repr(key[:40])
        errors.append(FieldError(f"{field}.{shown}", "is not a field of a policy"))
    return raw


def _share(
    raw: object, field: str, upper: Decimal, errors: list[FieldError], *, zero: bool = False
) -> Decimal | None:
    try:
        value = parse_decimal(raw, field)
    except InvalidRequestError as error:
        errors.extend(error.errors)
        return None
    if value > upper or (value == 0 and not zero):
        low = "0" if zero else "above 0"
        errors.append(FieldError(field, f"must be {low} and at most {upper}"))
        return None
    return value


def _integer(
    raw: object, field: str, lower: int, upper: int, errors: list[FieldError]
) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int) or not lower <= raw <= upper:
        errors.append(FieldError(field, f"must be a whole number from {lower} to {upper}"))
        return None
    return raw


def _time(raw: object, errors: list[FieldError]) -> time | None:
    match = _TIME.fullmatch(raw) if isinstance(raw, str) else None
    if match is None:
        errors.append(FieldError("calendar.time", 'must be a UTC time such as "14:30"'))
        return None
    return time(int(match[1]), int(match[2]))


def _date(raw: object, errors: list[FieldError]) -> date | None:
    if isinstance(raw, str) and _DATE.fullmatch(raw):
        try:
            return date.fromisoformat(raw)
        except ValueError:
            pass
    errors.append(FieldError("calendar.paused_until", 'must be a date such as "2027-01-31"'))
    return None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0, 0), tzinfo=UTC)


def _add_months(first: date, months: int) -> date:
    index = first.month - 1 + months
    return date(first.year + index // 12, index % 12 + 1, 1)
