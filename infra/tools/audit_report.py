"""What an auditor reads: read models checked against a replay, an Operation's fairness
report, and a Trader's state as of any moment.

The replay comparison trusts nothing the live consumer did: every read model is rebuilt from
the event history into a scratch schema (`projections.rebuild.rebuild`) and compared row by
row, every column including the bookkeeping of who last changed the row; only the consumer's
offsets are left out, since they describe Kafka, not the rows.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.audit import history
from domain.chunk import OperationChunk, chunk_id
from domain.operation import Operation
from domain.trader import Trader
from infra.bus.outbox import plain
from projections.rebuild import rebuild
from projections.schema import Table, quoted
from projections.tables import read_model_tables

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    import asyncpg
    from eventsourcing.application import Application

    from domain.services import Trading

ABSENT = "<absent>"


# -- replay -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    table: str
    id: UUID
    column: str
    live: Any
    replayed: Any

    def __str__(self) -> str:
        where = f"{self.table} {self.id} {self.column}"
        return f"{where}: live {self.live!r} != replayed {self.replayed!r}"


def diff_rows(
    table: str,
    live: Mapping[UUID, Mapping[str, Any]],
    replayed: Mapping[UUID, Mapping[str, Any]],
) -> list[Difference]:
    """Row by row and column by column; a row on one side only is one `(row)` difference."""
    differences = []
    for row_id in sorted(set(live) | set(replayed), key=str):
        mine, theirs = live.get(row_id), replayed.get(row_id)
        if mine is None or theirs is None:
            differences.append(
                Difference(
                    table,
                    row_id,
                    "(row)",
                    "present" if mine is not None else ABSENT,
                    "present" if theirs is not None else ABSENT,
                )
            )
            continue
        differences += [
            Difference(table, row_id, column, mine[column], theirs.get(column, ABSENT))
            for column in mine
            if mine[column] != theirs.get(column, ABSENT)
        ]
    return differences


async def _rows(pool: asyncpg.Pool, table: Table, schema: str) -> dict[UUID, dict[str, Any]]:
    records = await pool.fetch(f"SELECT {table.selected()} FROM {table.qualified(schema)}")
    return {UUID(str(r["id"])): dict(r) for r in records}


async def compare_schemas(pool: asyncpg.Pool, live: str, replayed: str) -> list[Difference]:
    differences = []
    for table in read_model_tables():
        differences += diff_rows(
            table.name, await _rows(pool, table, live), await _rows(pool, table, replayed)
        )
    return differences


async def replay_differences(
    pool: asyncpg.Pool, app: Application[UUID], *, live: str = "public", scratch: str = "scratch"
) -> list[Difference]:
    """Rebuild the read models into `scratch` (dropping what it held) and compare with `live`."""
    if quoted(scratch) == quoted(live):
        raise ValueError("the scratch schema must differ from the live one")
    async with pool.acquire() as connection:
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted(scratch)}")
    await rebuild(pool, app, scratch)
    return await compare_schemas(pool, live, scratch)


# -- a Trader as of a moment --------------------------------------------------------------------
def trader_at(trading: Trading, trader_id: UUID, at: datetime) -> Trader | None:
    """The Trader rebuilt from its events stamped at or before `at` (None: not yet opened)."""
    if at.tzinfo is None:
        raise ValueError("the time must carry a UTC offset (RFC 3339)")
    trader: Any = None
    for event in history(trading, trader_id):
        if event.timestamp > at:
            break
        trader = event.mutate(trader)
    return trader if isinstance(trader, Trader) else None


def trader_state(trader: Trader, at: datetime | None = None) -> dict[str, Any]:
    state = {
        "trader_id": str(trader.id),
        "participant_code": trader.participant_code,
        "strategy_id": str(trader.strategy_id),
        "version": trader.version,
        "status": trader.status.value,
        "positions": {a: str(q) for a, q in sorted(trader.positions.items())},
        "cash": str(trader.cash),
        "held_by": str(trader.held_by) if trader.held_by else None,
        "execution_id": str(trader.execution_id) if trader.execution_id else None,
    }
    if at is not None:
        state["as_of"] = at.isoformat()
    return state


# -- the fairness report ----------------------------------------------------------------------
def operation_report(trading: Trading, operation_id: UUID) -> dict[str, Any] | None:
    """Locked prices, blocks, fills, residual, and every Trader's decision and instructions."""
    operation = trading.find(operation_id, Operation)
    if operation is None:
        return None
    ended = max(e.timestamp for e in history(trading, operation_id))
    chunks = trading.get_many([chunk_id(operation_id, i) for i in range(operation.chunk_count)])
    decisions = [
        d
        for _, c in sorted((c.index, c) for c in chunks.values() if isinstance(c, OperationChunk))
        for d in c.decisions.values()
    ]
    return {
        "operation": {
            "id": str(operation.id),
            "platform_id": operation.platform_id,
            "strategy_id": str(operation.strategy_id),
            "type": operation.type.value,
            "status": operation.status.value,
            "status_reason": operation.status_reason.value,
            "quoted_currency": operation.quoted_currency,
        },
        "locked_prices": _by_asset(operation.locked_prices),
        "block_orders": _by_asset(operation.block_orders),
        "fills": _by_asset(operation.fills),
        "residual": [{"asset": a, "quantity": q} for a, q in sorted(operation.residual.items())],
        # Assets whose buys and sells crossed inside the spread: priced at the mid, no block;
        # `quantity` is the net the house carries, between the nets seen at the bid and ask.
        "crossed": [
            {"asset": a, "quantity": c.get("net", "0"), **c}
            for a, c in sorted(operation.crossed.items())
        ],
        "float_budgets": dict(operation.float_budgets),
        "traders": [_trader_entry(trading, operation_id, d, ended) for d in decisions],
    }


def _by_asset(records: Mapping[str, Mapping[str, str]]) -> list[dict[str, str]]:
    return [{"asset": asset, **dict(record)} for asset, record in sorted(records.items())]


def _trader_entry(
    trading: Trading, operation_id: UUID, decision: Mapping[str, str], ended: datetime
) -> dict[str, Any]:
    """One Trader's line: instructions from its `Settled`, positions right after the
    Operation's last event on it (or, untouched, as of the Operation's end)."""
    entry: dict[str, Any] = {
        "participant_code": decision["participant_code"],
        "trader_id": decision.get("trader_id") or None,
        "execution_id": decision.get("execution_id") or None,
        "outcome": decision["outcome"],
        "reasons": [r for r in decision.get("reasons", "").split(",") if r],
        "instructions": [],
        "positions": None,
        "cash": None,
    }
    if not entry["trader_id"]:
        return entry
    events = history(trading, UUID(entry["trader_id"]))
    mine = [n for n, e in enumerate(events) if getattr(e, "operation_id", None) == operation_id]
    upto = mine[-1] + 1 if mine else sum(e.timestamp <= ended for e in events)
    trader: Any = None
    for event in events[:upto]:
        trader = event.mutate(trader)
    for n in mine:
        if type(events[n]).__qualname__.endswith(".Settled"):
            entry["instructions"] = [
                {
                    "side": i["side"],
                    "asset": i["underlying_currency"],
                    "quantity": i["quantity"],
                    "price": i["price"],
                    "notional": i["notional"],
                }
                for i in events[n].instructions
            ]
    if isinstance(trader, Trader):
        entry["positions"] = {a: str(q) for a, q in sorted(trader.positions.items())}
        entry["cash"] = str(trader.cash)
    return entry


CSV_COLUMNS = (
    "record",
    "asset",
    "side",
    "quantity",
    "price",
    "notional",
    "quote_id",
    "quoted_at",
    "participant_code",
    "trader_id",
    "outcome",
    "reasons",
    "positions",
    "cash",
)


def report_json(report: Mapping[str, Any]) -> str:
    return json.dumps(plain(report), indent=2, sort_keys=False)


def report_csv(report: Mapping[str, Any]) -> str:
    """One row per record: `locked_price`, `block_order`, `fill`, `residual`, `crossed`, then
    per Trader one `instruction` row per leg (or a single `trader` row when it has none)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record, key in (
        ("locked_price", "locked_prices"),
        ("block_order", "block_orders"),
        ("fill", "fills"),
        ("residual", "residual"),
        ("crossed", "crossed"),
    ):
        writer.writerows({"record": record, **row} for row in report[key])
    writer.writerows(_trader_rows(report["traders"]))
    return buffer.getvalue()


def _trader_rows(traders: Iterable[Mapping[str, Any]]) -> Iterable[dict[str, Any]]:
    for trader in traders:
        common = {
            "participant_code": trader["participant_code"],
            "trader_id": trader["trader_id"] or "",
            "outcome": trader["outcome"],
            "reasons": ",".join(trader["reasons"]),
            "positions": json.dumps(trader["positions"], sort_keys=True)
            if trader["positions"] is not None
            else "",
            "cash": trader["cash"] or "",
        }
        if not trader["instructions"]:
            yield {"record": "trader", **common}
        for instruction in trader["instructions"]:
            yield {"record": "instruction", **common, **instruction}
