"""A preview (`domain.preview`) as the API and the command topic answer it: a summary and,
unless only the summary is asked for, one page of participants in the lists' envelope
(`{"message": [...], "page", "size", "total_pages"}`). Decimals as plain strings."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from projections.queries import PageOf
from projections.representations import rfc3339
from projections.traders import plain_decimal

if TYPE_CHECKING:
    from domain.commands import PreviewOperation
    from domain.preview import OperationPreview, ParticipantPreview


def preview_summary(found: OperationPreview) -> dict[str, Any]:
    """A preview's totals (`domain.preview`): counts by outcome and by reason, per asset the
    gross buys and sells and the block left after netting, the float, the prices used."""
    money = found.float
    return {
        "strategy_id": str(found.strategy_id),
        "type": found.type.value,
        "quoted_currency": found.quoted_currency,
        "allocations": found.allocations,
        "parameters": dict(found.parameters),
        "participant_count": len(found.participants),
        "counts": dict(found.counts),
        "reasons": dict(found.reasons),
        "totals": {
            t.asset: {
                "gross_buy_quantity": plain_decimal(t.bought),
                "gross_buy_notional": plain_decimal(t.paid),
                "gross_sell_quantity": plain_decimal(t.sold),
                "gross_sell_notional": plain_decimal(t.received),
                "net_quantity": plain_decimal(t.net),
                "block": None
                if t.block is None
                else {"side": t.block.side.value, "quantity": plain_decimal(t.block.quantity)},
            }
            for t in found.totals
        },
        "float": {
            "currency": money.currency,
            "available": plain_decimal(money.available),
            "needed": plain_decimal(money.needed),
            "reserved": plain_decimal(money.reserved),
            "shortfall": plain_decimal(money.shortfall),
            "returned": plain_decimal(money.returned),
        },
        "prices": {asset: plain_decimal(p) for asset, p in sorted(found.prices.items())},
        "priced_at": rfc3339(found.priced_at),
    }


def preview_participant(line: ParticipantPreview) -> dict[str, Any]:
    return {
        "participant_code": line.participant_code,
        "outcome": line.outcome.value,
        "status_reason": line.reasons[0].value if line.reasons else "",
        "status_reasons": [r.value for r in line.reasons],
        "decided_at": line.decided_at,
        "legs": [
            {
                "side": leg.side.value,
                "underlying_currency": leg.asset,
                "quantity": plain_decimal(leg.quantity),
                "notional": plain_decimal(leg.notional),
            }
            for leg in line.legs
        ],
    }


def preview_page(found: OperationPreview, page: int, size: int) -> PageOf:
    """The participants of page `page` (1-based, `size` each), as a list query answers."""
    lines = found.participants
    start = (page - 1) * size
    items = [preview_participant(line) for line in lines[start : start + size]]
    return PageOf(items, page, max(1, math.ceil(len(lines) / size)), len(lines))


def preview_resource(found: OperationPreview, preview: PreviewOperation) -> dict[str, Any]:
    """A preview as the command topic answers it: the summary and, unless `summary_only`,
    the page of participants asked for, in the lists' envelope."""
    resource: dict[str, Any] = {"summary": preview_summary(found)}
    if preview.summary_only:
        return {**resource, "message": None, "page": None, "size": None, "total_pages": None}
    items, page, total_pages, _ = preview_page(found, preview.page, preview.size)
    return {
        **resource,
        "message": items,
        "page": page,
        "size": preview.size,
        "total_pages": total_pages,
    }
