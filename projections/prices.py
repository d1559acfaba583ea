"""The latest indicative prices, per platform, quoted currency and asset, fed by events only:
`Operation.IndicativePricesRecorded` (the prices an Operation's checks used),
`Operation.PricesLocked` (its firm prices) and `Strategy.PolicyRunRecorded` (the prices a
scheduler run valued Traders at). Drift (`projections.drift`) is measured at these.

A row is keyed by (platform, currency, asset), not by a stream: many Operations and
Strategies write it. So it does not follow the usual "a later event of the same stream"
rule; it keeps the price of the event that is latest by (event timestamp, stream id,
version), in the fold and in the upsert's guard alike. That order is total and does not
depend on the order events arrive in, so:
- a redelivered or replayed event compares equal to the row it wrote and changes nothing;
- streams applied out of order (Kafka partitions in parallel, a retried poisoned stream) end
  with the same row as in log order: an older price arriving late is ignored, and two
  partitions writing the same row at once are settled by the guard against what committed;
- a rebuild gives the same rows.
Ties on the timestamp (two events in the same microsecond) go to the higher stream id: an
arbitrary but fixed choice. Another platform's prices are never used: a platform's prices
come from its own Operations and runs (otherwise their times would tell it when another
platform traded). An Operation row projected before it kept its quoted currency gives no
price (its later Operations will, and a rebuild fills it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar
from uuid import UUID, uuid5

from projections.operations import OPERATIONS, OperationRow
from projections.schema import BOOKKEEPING, Column, Key, Rows, Table, find
from projections.strategies import STRATEGIES, StrategyRow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from infra.bus.messages import DomainEventMessage

PRICES = Table(
    "prices",
    (
        Column("id", "uuid"),
        Column("platform_id", "text"),
        Column("quoted_currency", "text"),
        Column("asset", "text"),
        Column("price", "numeric"),
        #: The timestamp of the event that recorded it.
        Column("priced_at", "timestamptz"),
        #: That event's type (`Operation.PricesLocked`, ...): where the price came from.
        Column("event_type", "text"),
        *BOOKKEEPING,
    ),
    (("by_currency", "(platform_id, quoted_currency, asset)"),),
    guard="(r.priced_at, r.source_id, r.version)"
    " < (EXCLUDED.priced_at, EXCLUDED.source_id, EXCLUDED.version)",
)
_NS = UUID("0b8e3c1f-5a57-4d0f-9a7e-7d4b1f2c6e90")

OPERATION_EVENTS = frozenset({"Operation.IndicativePricesRecorded", "Operation.PricesLocked"})
STRATEGY_EVENT = "Strategy.PolicyRunRecorded"


@dataclass(frozen=True)
class PriceRow:
    TABLE: ClassVar[Table] = PRICES
    id: UUID
    platform_id: str
    quoted_currency: str
    asset: str
    price: Decimal
    priced_at: datetime
    event_type: str
    created_at: datetime
    updated_at: datetime
    source_id: UUID
    version: int

    @property
    def order(self) -> tuple[datetime, UUID, int]:
        """Which of two prices is the later (the upsert's guard compares the same)."""
        return (self.priced_at, self.source_id, self.version)


def price_id(platform_id: str, currency: str, asset: str) -> UUID:
    return uuid5(_NS, f"{platform_id}:{currency}:{asset}")


def handles(aggregate_type: str, event_type: str) -> bool:
    """Whether events of this kind may read or change a row here (asked once per kind)."""
    del aggregate_type
    return event_type in OPERATION_EVENTS or event_type == STRATEGY_EVENT


def needs(event: DomainEventMessage, rows: Rows) -> list[Key]:
    """The row of the event's own stream (it names the platform and currency), and the price
    rows of the assets it prices once that is known."""
    own = _own(event)
    if own is None:
        return []
    keys = [own]
    source = rows.get(own)
    if source is not None and _currency(source):
        keys += [
            (PRICES.name, price_id(source.platform_id, _currency(source), asset))
            for asset in _prices(event)
        ]
    return keys


#: Events whose `needs` read rows (the stream's own row names the currency): the writer
#: asks again once those are known.
NEEDS_FROM_ROWS = OPERATION_EVENTS | {STRATEGY_EVENT}


def changes(event: DomainEventMessage, rows: Rows) -> list[PriceRow]:
    """A row per asset whose price is later than the one held (none for a replay)."""
    own = _own(event)
    source: OperationRow | StrategyRow | None = None if own is None else rows.get(own)
    if source is None or not _currency(source):
        return []
    currency = _currency(source)
    changed = []
    for asset, price in _prices(event).items():
        key = price_id(source.platform_id, currency, asset)
        current: PriceRow | None = find(rows, PRICES, key)
        row = PriceRow(
            id=key,
            platform_id=source.platform_id,
            quoted_currency=currency,
            asset=asset,
            price=Decimal(price),
            priced_at=event.timestamp,
            event_type=event.type,
            created_at=event.timestamp,  # not the first price's: arrival order must not show
            updated_at=event.timestamp,
            source_id=event.aggregate_id,
            version=event.aggregate_version,
        )
        if current is None or current.order < row.order:
            changed.append(row)
    return changed


def _own(event: DomainEventMessage) -> Key | None:
    if event.type in OPERATION_EVENTS:
        return (OPERATIONS.name, event.aggregate_id)
    if event.type == STRATEGY_EVENT:
        return (STRATEGIES.name, event.aggregate_id)
    return None


def _currency(source: OperationRow | StrategyRow) -> str:
    return source.quoted_currency or ""


def _prices(event: DomainEventMessage) -> dict[str, str]:
    """Asset -> price as the event writes it (a locked price is a quote: its `price`)."""
    raw: Mapping[str, object] = event.data.get("prices") or {}
    return {
        asset: str(value["price"] if isinstance(value, dict) else value)
        for asset, value in sorted(raw.items())
    }


def latest(rows: Iterable[PriceRow]) -> dict[str, PriceRow]:
    """Asset -> its row (the rows of one platform and currency)."""
    return {row.asset: row for row in rows}
