"""List and get for the HTTP API, read from the projected tables only.

Every query is scoped to one platform: another platform's resource reads as absent (the API
answers 404 and never reveals it exists). A Trader whose first enrollment has not settled is
`pending` and reads as absent too. Lists are newest first, ties by id, in pages of `size`
(default 50, at most 200); each call returns a `PageOf` (`items, page, total_pages, total`) with
`total_pages` at least 1 and `total` the count of every page's items. Items are the spec's JSON
objects: decimals and UUIDs as strings, RFC3339 UTC times. An Execution names its Trader
(`trader_id`, `account_label`) only while that Trader is visible, so that every `trader_id`
shown resolves with GET /strategies/traders/{id}; before that (an enrollment not settled yet,
one that failed, a request rejected for a Trader that never came to exist) both are "". Traders
add `status`, `positions` and `cash` (documented extensions); Operations add
`participant_count`, `counts` and `locked_prices`.

SQL is assembled from fixed column names only; every value is a parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from domain.errors import FieldError, InvalidRequestError, StrategyNotFoundError
from domain.money import parse_decimal
from projections.drift import drift_context
from projections.executions import EXECUTIONS, ExecutionRow
from projections.filters import (
    EXECUTION_FILTERS,
    OPERATION_FILTERS,
    STRATEGY_FILTERS,
    TRADER_FILTERS,
    Clause,
    Condition,
    conditions,
)
from projections.operations import OperationRow
from projections.representations import operation_origin, policy_view, rfc3339
from projections.schema import DEFAULT_SCHEMA, row_from_record
from projections.strategies import STRATEGIES, StrategyRow
from projections.traders import PENDING, TRADERS, TraderRow, is_visible, plain_decimal

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    import asyncpg

    from projections.schema import Table

DEFAULT_SIZE = 50
MAX_SIZE = 200

Item = dict[str, Any]


class PageOf(NamedTuple):
    items: list[Item]
    page: int
    total_pages: int
    #: Items on every page together (the API's response budget re-counts pages with it).
    total: int


# -- resources ----------------------------------------------------------------------------
def strategy_resource(row: StrategyRow) -> Item:
    return {
        "id": str(row.id),
        "request_id": str(row.request_id),
        "quoted_currency": row.quoted_currency,
        "metadata": row.metadata,
        "model": row.model,
        "status": row.status or "active",
        "broken_assets": row.broken_assets or [],
        "policy": policy_view(row.policy, row.policy_run),
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


def trader_resource(row: TraderRow) -> Item:
    return {
        "id": str(row.id),
        "strategy_id": str(row.strategy_id),
        "participant_code": row.participant_code,
        "account_label": row.account_label,
        "auto_rebalance": row.auto_rebalance,
        "status": row.status,
        "positions": dict(row.positions),
        "cash": plain_decimal(row.cash),
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


def operation_resource(row: OperationRow) -> Item:
    return {
        "id": str(row.id),
        "strategy_id": str(row.strategy_id),
        "request_id": str(row.request_id),
        "type": row.type,
        "status": row.status,
        "status_reason": row.status_reason,
        "allocations": row.allocations,
        "participant_count": row.participant_count,
        "counts": row.counts,
        "locked_prices": row.locked_prices,
        **operation_origin(row.parameters),
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


def execution_resource(row: ExecutionRow, *, trader_visible: bool) -> Item:
    """`trader_visible`: whether the row's Trader reads as existing now (`is_visible`)."""
    named = row.trader_id is not None and trader_visible
    return {
        "id": str(row.id),
        "strategy_id": str(row.strategy_id),
        "operation_id": str(row.operation_id),
        "trader_id": str(row.trader_id) if named else "",
        "participant_code": row.participant_code,
        "account_label": row.account_label if named else "",
        "status": row.status,
        "status_reason": row.status_reason,
        "status_reasons": list(row.status_reasons),
        "instructions": row.instructions,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
    }


# -- strategies ---------------------------------------------------------------------------
async def get_strategy(
    pool: asyncpg.Pool, platform_id: str, strategy_id: UUID, *, schema: str = DEFAULT_SCHEMA
) -> Item | None:
    return await _get(pool, schema, _rows(StrategyRow, strategy_resource), platform_id, strategy_id)


async def strategies_with_models(pool: asyncpg.Pool, *, schema: str = DEFAULT_SCHEMA) -> list[UUID]:
    """Every platform's Strategies that have a model: the policy scheduler's round (it
    decides from the store; this only says whom to look at)."""
    rows = await pool.fetch(
        f"SELECT id FROM {STRATEGIES.qualified(schema)} WHERE model IS NOT NULL"
        " ORDER BY created_at, id"
    )
    return [row["id"] for row in rows]


async def list_strategies(
    pool: asyncpg.Pool,
    platform_id: str,
    *,
    page: int = 1,
    size: int = DEFAULT_SIZE,
    schema: str = DEFAULT_SCHEMA,
    **filters: Any,
) -> PageOf:
    read = _rows(StrategyRow, strategy_resource)
    where = conditions(STRATEGY_FILTERS, filters)
    return await _list(pool, schema, read, platform_id, where, page, size)


# -- traders ------------------------------------------------------------------------------
_VISIBLE_TRADER: Condition = ("status", "<>", PENDING)


async def get_trader(
    pool: asyncpg.Pool, platform_id: str, trader_id: UUID, *, schema: str = DEFAULT_SCHEMA
) -> Item | None:
    read = _rows(TraderRow, trader_resource)
    return await _get(pool, schema, read, platform_id, trader_id, [_VISIBLE_TRADER])


async def list_traders(
    pool: asyncpg.Pool,
    platform_id: str,
    *,
    page: int = 1,
    size: int = DEFAULT_SIZE,
    schema: str = DEFAULT_SCHEMA,
    **filters: Any,
) -> PageOf:
    """`filters`: values of `TRADER_FILTERS` by name. The drift filters measure each
    Trader against its Strategy (`strategy_id`, required with them) at the latest prices."""
    where = [_VISIBLE_TRADER, *conditions(TRADER_FILTERS, filters)]
    try:
        where += await _drift_conditions(pool, platform_id, schema, filters)
    except StrategyNotFoundError:  # another platform's Strategy: its Traders read as absent
        return PageOf([], page, 1, 0)
    read = _rows(TraderRow, trader_resource)
    return await _list(pool, schema, read, platform_id, where, page, size)


async def _drift_conditions(
    pool: asyncpg.Pool, platform_id: str, schema: str, filters: dict[str, Any]
) -> list[Condition]:
    threshold, band = filters.get("drift_gte"), filters.get("drift")
    if threshold is None and band is None:
        return []
    named = "drift[gte]" if threshold is not None else "drift"
    strategy_id = filters.get("strategy_id")
    if strategy_id is None:
        raise InvalidRequestError(
            f"{named} needs strategy_id: drift is measured against a Strategy's model",
            errors=(FieldError(named, "needs strategy_id"),),
        )
    context = await drift_context(pool, platform_id, strategy_id, schema=schema, field=named)
    found: list[Condition] = []
    if threshold is not None:
        found.append(context.at_least_clause(parse_decimal(threshold, "drift[gte]")))
    if band is not None:
        found.append(context.outside_clause())
    return found


# -- operations ---------------------------------------------------------------------------
async def get_operation(
    pool: asyncpg.Pool, platform_id: str, operation_id: UUID, *, schema: str = DEFAULT_SCHEMA
) -> Item | None:
    read = _rows(OperationRow, operation_resource)
    return await _get(pool, schema, read, platform_id, operation_id)


async def list_operations(
    pool: asyncpg.Pool,
    platform_id: str,
    *,
    page: int = 1,
    size: int = DEFAULT_SIZE,
    schema: str = DEFAULT_SCHEMA,
    **filters: Any,
) -> PageOf:
    """`filters`: values of `OPERATION_FILTERS` by name."""
    where = conditions(OPERATION_FILTERS, filters)
    read = _rows(OperationRow, operation_resource)
    return await _list(pool, schema, read, platform_id, where, page, size)


# -- executions ---------------------------------------------------------------------------
async def get_execution(
    pool: asyncpg.Pool, platform_id: str, execution_id: UUID, *, schema: str = DEFAULT_SCHEMA
) -> Item | None:
    return await _get(pool, schema, _executions(schema), platform_id, execution_id)


async def list_executions(
    pool: asyncpg.Pool,
    platform_id: str,
    *,
    page: int = 1,
    size: int = DEFAULT_SIZE,
    schema: str = DEFAULT_SCHEMA,
    **filters: Any,
) -> PageOf:
    """`filters`: values of `EXECUTION_FILTERS` by name."""
    where = conditions(EXECUTION_FILTERS, filters)
    trader_id = filters.get("trader_id")
    if trader_id is not None and not await get_trader(pool, platform_id, trader_id, schema=schema):
        return PageOf([], page, 1, 0)  # a Trader that does not exist (yet) names no Execution
    return await _list(pool, schema, _executions(schema), platform_id, where, page, size)


def _executions(schema: str) -> _Read:
    """Executions read with their Trader's status, which decides whether they name it."""
    status = (
        f"(SELECT t.status FROM {TRADERS.qualified(schema)} AS t "
        f"WHERE t.id = {EXECUTIONS.qualified(schema)}.trader_id) AS trader_status"
    )

    def build(record: asyncpg.Record) -> Item:
        row = row_from_record(ExecutionRow, record)
        return execution_resource(row, trader_visible=is_visible(record["trader_status"]))

    return _Read(ExecutionRow, build, extra=status)


# -- the two query shapes -----------------------------------------------------------------
@dataclass(frozen=True)
class _Read:
    """How one kind of item is read: its row type, the item made of a selected record, and
    any expression selected besides the row's columns."""

    kind: type[Any]
    item: Callable[[asyncpg.Record], Item]
    extra: str = ""

    @property
    def table(self) -> Table:
        table: Table = self.kind.TABLE
        return table

    def selected(self) -> str:
        columns = self.table.selected()
        return f"{columns}, {self.extra}" if self.extra else columns


def _rows(kind: type[Any], resource: Callable[[Any], Item]) -> _Read:
    """Items made of the row alone."""
    return _Read(kind, lambda record: resource(row_from_record(kind, record)))


def check_page(page: int, size: int) -> None:
    if page < 1:
        raise ValueError(f"page must be 1 or more, not {page}")
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(f"size must be between 1 and {MAX_SIZE}, not {size}")


def _where(platform_id: str, conditions: Sequence[Condition]) -> tuple[str, list[Any]]:
    params: list[Any] = [platform_id]
    clauses = ["platform_id = $1"]
    for condition in conditions:
        if isinstance(condition, Clause):
            first = len(params) + 1
            params.extend(condition.values)
            names = [f"${first + i}" for i in range(len(condition.values))]
            clauses.append(condition.sql.format(*names))
            continue
        column, operator, value = condition
        if value is not None:
            params.append(value)
            clauses.append(f"{column} {operator} ${len(params)}")
    return " AND ".join(clauses), params


async def _get(
    pool: asyncpg.Pool,
    schema: str,
    read: _Read,
    platform_id: str,
    row_id: UUID,
    conditions: Sequence[Condition] = (),
) -> Item | None:
    table = read.table
    where, params = _where(platform_id, [("id", "=", row_id), *conditions])
    record = await pool.fetchrow(
        f"SELECT {read.selected()} FROM {table.qualified(schema)} WHERE {where}", *params
    )
    return None if record is None else read.item(record)


async def _list(
    pool: asyncpg.Pool,
    schema: str,
    read: _Read,
    platform_id: str,
    conditions: Sequence[Condition],
    page: int,
    size: int,
) -> PageOf:
    check_page(page, size)
    table = read.table
    where, params = _where(platform_id, conditions)
    n = len(params)
    records = await pool.fetch(
        f"SELECT {read.selected()}, count(*) OVER () AS total "
        f"FROM {table.qualified(schema)} WHERE {where} "
        f"ORDER BY created_at DESC, id LIMIT ${n + 1} OFFSET ${n + 2}",
        *params,
        size,
        (page - 1) * size,
    )
    if records:
        total = int(records[0]["total"])
    else:  # past the last page (or nothing at all): the window count had no row to ride on
        total = int(
            await pool.fetchval(
                f"SELECT count(*) FROM {table.qualified(schema)} WHERE {where}", *params
            )
        )
    items = [read.item(record) for record in records]
    return PageOf(items, page, max(1, math.ceil(total / size)), total)
