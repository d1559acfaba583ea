"""The traders read model, fed by the Trader stream alone.

`Trader.Opened` adds the row as `pending` (the hold of its first enrollment); it becomes
visible (`active`) when that enrollment settles. `Trader.Settled` carries the fills, not the
resulting balances, so positions and cash are replayed here exactly as the aggregate does:
`funded` comes in, `paid_out` goes out, a buy costs its notional and a sell yields it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar
from uuid import UUID

from domain.money import exact
from projections.schema import (
    BOOKKEEPING,
    Column,
    Key,
    Rows,
    Table,
    evolve,
    find,
    list_indexes,
    moves_forward,
    uuid_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from infra.bus.messages import DomainEventMessage

PENDING = "pending"
EVENTS = frozenset({"Trader.Opened", "Trader.Settled", "Trader.AutoRebalanceChanged"})

TRADERS = Table(
    "traders",
    (
        Column("id", "uuid"),
        Column("platform_id", "text"),
        Column("strategy_id", "uuid"),
        Column("participant_code", "text"),
        Column("account_label", "text"),
        Column("auto_rebalance", "boolean"),
        Column("status", "text"),
        Column("positions", "jsonb"),
        Column("cash", "numeric"),
        *BOOKKEEPING,
    ),
    (
        *list_indexes("strategy_id", "participant_code", "auto_rebalance"),
        # A Strategy's Trader by participant code (a list filtered by both). The scope of a
        # rebalance no longer reads this table: it comes from the write side's roster.
        ("scope", "(strategy_id, participant_code)"),
    ),
)


@dataclass(frozen=True)
class TraderRow:
    TABLE: ClassVar[Table] = TRADERS
    id: UUID
    platform_id: str
    strategy_id: UUID
    participant_code: str
    account_label: str
    auto_rebalance: bool
    status: str
    #: Asset -> quantity held, as a plain decimal string; assets at zero are absent.
    positions: dict[str, str]
    cash: Decimal
    created_at: datetime
    updated_at: datetime
    source_id: UUID
    version: int


def handles(aggregate_type: str, event_type: str) -> bool:
    """Whether events of this kind may read or change a row here (asked once per kind)."""
    del aggregate_type
    return event_type in EVENTS


def needs(event: DomainEventMessage, rows: Rows) -> list[Key]:
    del rows
    return [(TRADERS.name, event.aggregate_id)] if event.type in EVENTS else []


def changes(event: DomainEventMessage, rows: Rows) -> list[TraderRow]:
    """The Trader row after `event`; nothing when the event is not new to the row."""
    if event.type not in EVENTS:
        return []
    current: TraderRow | None = find(rows, TRADERS, event.aggregate_id)
    if not moves_forward(current, event.aggregate_id, event.aggregate_version):
        return []
    data = event.data
    if event.type == "Trader.Opened":
        return [_opened(event)] if current is None else []
    if current is None:
        return []  # a later event without its Opened: nothing to change
    moved = {"updated_at": event.timestamp, "version": event.aggregate_version}
    if event.type == "Trader.AutoRebalanceChanged":
        return [evolve(current, **moved, auto_rebalance=bool(data["auto_rebalance"]))]
    positions, cash = settle(
        current.positions,
        current.cash,
        data["instructions"],
        Decimal(data["funded"]),
        Decimal(data["paid_out"]),
    )
    return [
        evolve(
            current,
            **moved,
            status=data["status"],
            auto_rebalance=bool(data["auto_rebalance"]),
            positions=positions,
            cash=cash,
        )
    ]


def _opened(event: DomainEventMessage) -> TraderRow:
    data = event.data
    return TraderRow(
        id=event.aggregate_id,
        platform_id=data["platform_id"],
        strategy_id=uuid_of(data["strategy_id"]),
        participant_code=data["participant_code"],
        account_label=data["strategy_id"],
        auto_rebalance=bool(data["auto_rebalance"]),
        status=PENDING,
        positions={},
        cash=Decimal(0),
        created_at=event.timestamp,
        updated_at=event.timestamp,
        source_id=event.aggregate_id,
        version=event.aggregate_version,
    )


@exact
def settle(
    positions: Mapping[str, str],
    cash: Decimal,
    instructions: Iterable[Mapping[str, str]],
    funded: Decimal,
    paid_out: Decimal,
) -> tuple[dict[str, str], Decimal]:
    """Positions and cash once a settlement's fills apply (the aggregate's own arithmetic)."""
    held = {asset: Decimal(quantity) for asset, quantity in positions.items()}
    cash += funded - paid_out
    for instruction in instructions:
        asset = instruction["underlying_currency"]
        quantity, notional = Decimal(instruction["quantity"]), Decimal(instruction["notional"])
        buy = instruction["side"] == "buy"
        held[asset] = held.get(asset, Decimal(0)) + (quantity if buy else -quantity)
        cash += -notional if buy else notional
    return {asset: plain_decimal(q) for asset, q in sorted(held.items()) if q}, cash


def is_visible(status: str | None) -> bool:
    """Whether a Trader with this read-model status (None: no row) exists for the API: a
    `pending` Trader (first enrollment not settled, or failed) reads as absent."""
    return status is not None and status != PENDING


def plain_decimal(value: Decimal) -> str:
    """A decimal string without exponent (str(Decimal("0.00000001")) is "1E-8")."""
    return format(value, "f")


_PLAIN = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


def plain_text(text: str) -> str:
    """`plain_decimal(Decimal(text))`. The events' amounts are written plain already, so a
    match usually spares the Decimal and its formatting (five per leg the fold writes)."""
    return text if _PLAIN.fullmatch(text) else plain_decimal(Decimal(text))
