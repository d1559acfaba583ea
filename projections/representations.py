"""The spec's objects (§1) as JSON-ready dicts, built from aggregates on the write side.

Used for command results and, until the projections catch up, HTTP answers to mutations.
Each carries exactly the fields, in the same format, as its read-model twin in
`projections.queries`: a client must not see a Trader's positions vanish, or an Operation's
counts, because it asked before the read models caught up.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.operation import Operation
from domain.strategy import Strategy
from domain.trader import Trader
from projections.traders import plain_decimal


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def strategy_resource(strategy: Strategy) -> dict[str, Any]:
    return {
        "id": str(strategy.id),
        "request_id": str(strategy.request_id),
        "quoted_currency": strategy.quoted_currency,
        "metadata": strategy.metadata,
        "model": (
            None
            if strategy.model is None
            else {"version": strategy.model_version, "allocations": strategy.model}
        ),
        "created_at": rfc3339(strategy.created_on),
        "updated_at": rfc3339(strategy.modified_on),
    }


def operation_resource(operation: Operation) -> dict[str, Any]:
    return {
        "id": str(operation.id),
        "strategy_id": str(operation.strategy_id),
        "request_id": str(operation.request_id),
        "type": operation.type.value,
        "status": operation.status.value,
        "status_reason": operation.status_reason.value,
        "allocations": operation.allocations or [],
        "participant_count": operation.participant_count,
        "counts": dict(operation.counts),
        "locked_prices": operation.locked_prices,
        "created_at": rfc3339(operation.created_on),
        "updated_at": rfc3339(operation.modified_on),
    }


def trader_resource(trader: Trader) -> dict[str, Any]:
    return {
        "id": str(trader.id),
        "strategy_id": str(trader.strategy_id),
        "participant_code": trader.participant_code,
        "account_label": trader.account_label,
        "auto_rebalance": trader.auto_rebalance,
        "status": trader.status.value,
        "positions": {
            asset: plain_decimal(quantity)
            for asset, quantity in sorted(trader.positions.items())
            if quantity
        },
        "cash": plain_decimal(trader.cash),
        "created_at": rfc3339(trader.created_on),
        "updated_at": rfc3339(trader.modified_on),
    }
