"""The filters of each list, declared once.

The API reads, validates and documents its query parameters from these declarations
(`api.routes.reads`), and `projections.queries` turns the same ones into SQL conditions, so a
filter cannot be accepted by the route and ignored by the query, or the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import MAXYEAR, UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.codes import MAX_CODE_LENGTH
from domain.statuses import OperationStatus, OperationType

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclass(frozen=True)
class Clause:
    """A condition no single column holds: SQL text (a constant of `projections/*.py`) whose
    `{0}`, `{1}`... stand for `values`, each passed as a query parameter."""

    sql: str
    values: tuple[Any, ...]


#: (column, operator, value): a condition applied when the value is not None; or a `Clause`.
Condition = tuple[str, str, Any] | Clause

#: A boolean filter is spelled exactly `true` or `false`, as on every other way in: FastAPI's
#: lax booleans read yes/on/1 as true, one query could then mean two things.
FLAG_CHOICES = ("true", "false")

#: PostgreSQL text cannot hold a NUL: such a filter failed in the database with a 500.
NO_NUL = r"^[^\x00]*$"


@dataclass(frozen=True)
class Filter:
    """One filter: `name` is its keyword in `projections.queries` (and, unless `query` says
    otherwise, its query parameter); a value must be of `kind`, one of `choices` if any, and
    within `max_length` and `pattern`; it compares `column` with `operator`."""

    name: str
    kind: type[Any]
    column: str
    operator: str = "="
    query: str = ""
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    pattern: str | None = None
    description: str = ""
    #: Computed from more than the row (drift needs the model and prices): the query that
    #: declares it applies it itself (`projections.drift`), `conditions` leaves it out.
    computed: bool = False

    def condition(self, value: Any) -> Condition:
        if self.kind is datetime:
            value = _utc(value)
        elif self.kind is bool and isinstance(value, str):
            value = value == "true"  # one of FLAG_CHOICES, the route's only accepted spellings
        return (self.column, self.operator, value)


def conditions(declared: Sequence[Filter], given: Mapping[str, Any]) -> list[Condition]:
    """The conditions of the `given` filter values; a name that `declared` lacks is a caller's
    mistake, refused rather than silently ignored."""
    unknown = sorted(set(given) - {f.name for f in declared})
    if unknown:
        raise TypeError(f"unknown filter(s): {', '.join(unknown)}")
    return [f.condition(given.get(f.name)) for f in declared if not f.computed]


def _utc(moment: datetime | None) -> datetime | None:
    """A time without zone is UTC (the API's times are), never the server's local time.

    A zoned time is converted here, not by the driver: 9999-12-31T23:59-14:00 is past the
    last datetime in UTC, and asyncpg's conversion raised (a fuzzed filter got a 500). Such a
    bound compares like the end (or start) of the datetime range, which it is clamped to.
    """
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        if moment.year == MAXYEAR:
            return datetime.max.replace(tzinfo=UTC)
        return datetime.min.replace(tzinfo=UTC)


#: A drift threshold: a decimal string from 0 to 1, at most 18 places.
DRIFT_THRESHOLD = r"^(0(\.[0-9]{1,18})?|1(\.0{1,18})?)$"


def _participant_code(description: str) -> Filter:
    return Filter(
        "participant_code",
        str,
        "participant_code",
        max_length=MAX_CODE_LENGTH,
        pattern=NO_NUL,
        description=description,
    )


def _one_of(column: str, choices: Sequence[str], description: str) -> Filter:
    return Filter(column, str, column, choices=tuple(choices), description=description)


STRATEGY_FILTERS: tuple[Filter, ...] = ()

TRADER_FILTERS = (
    Filter("strategy_id", UUID, "strategy_id", description="Traders of this Strategy."),
    _participant_code("The Trader of this participant."),
    Filter(
        "auto_rebalance",
        bool,
        "auto_rebalance",
        choices=FLAG_CHOICES,
        description="Traders with this setting: `true` or `false`.",
    ),
    Filter(
        "drift_gte",
        str,
        "",
        query="drift[gte]",
        max_length=20,
        pattern=DRIFT_THRESHOLD,
        computed=True,
        description="Extension, with `strategy_id`: Traders whose drift (largest "
        "|weight - target| at the latest indicative prices) is at least this, a decimal "
        "string from 0 to 1 (0.05: 5 weight points). Traders not valued for lack of a price "
        "are never selected.",
    ),
    Filter(
        "drift",
        str,
        "",
        choices=("outside",),
        computed=True,
        description="Extension, with `strategy_id`: `outside` selects the Traders outside "
        "the Strategy's policy drift band at the latest indicative prices (on the edge is "
        "inside).",
    ),
)

OPERATION_FILTERS = (
    Filter("strategy_id", UUID, "strategy_id", description="Operations of this Strategy."),
    _one_of("type", [t.value for t in OperationType], "Operations of this type."),
    _one_of("status", [s.value for s in OperationStatus], "Operations in this status."),
    Filter("request_id", UUID, "request_id", description="The Operation of this X-REQUEST-ID."),
    Filter(
        "created_gte",
        datetime,
        "created_at",
        ">=",
        query="created_at[gte]",
        description="Created at or after this time (UTC when it names no zone).",
    ),
    Filter(
        "created_lt",
        datetime,
        "created_at",
        "<",
        query="created_at[lt]",
        description="Created before this time (UTC when it names no zone).",
    ),
)

EXECUTION_FILTERS = (
    Filter("strategy_id", UUID, "strategy_id", description="Executions of this Strategy."),
    Filter("operation_id", UUID, "operation_id", description="Executions of this Operation."),
    Filter("trader_id", UUID, "trader_id", description="Executions of this (visible) Trader."),
    _participant_code("Executions of this participant."),
    _one_of(
        "status",
        ["awaiting_execution", "settled", "skipped", "rejected"],
        "Executions in this status.",
    ),
)
