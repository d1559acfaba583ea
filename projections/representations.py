"""The spec's objects (§1) as JSON-ready dicts, built from aggregates on the write side.

Used for command results and, until the projections catch up, HTTP answers to mutations.
Each carries exactly the fields, in the same format, as its read-model twin in
`projections.queries`: a client must not see a Trader's positions vanish, or an Operation's
counts, because it asked before the read models caught up.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        "status": strategy.status.value,
        "broken_assets": strategy.broken_assets,
        "policy": policy_view(
            policy_document(
                strategy.policy_version, strategy.policy_document, strategy.policy_since
            ),
            strategy.last_policy_run,
        ),
        "created_at": rfc3339(strategy.created_on),
        "updated_at": rfc3339(strategy.modified_on),
    }


def policy_document(
    version: int, document: Mapping[str, Any] | None, since: datetime | None
) -> dict[str, Any] | None:
    """A policy version as the strategies read model stores it (the resource less its last
    run): the version, when it took effect, and the policy as set."""
    if document is None:
        return None
    return {
        "version": version,
        "effective_from": None if since is None else rfc3339(since),
        **document,
    }


def policy_run_document(run: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The latest automatic run as stored and shown (its time as RFC 3339 text)."""
    if run is None:
        return None
    at = run.get("at")
    return {**run, "at": rfc3339(at) if isinstance(at, datetime) else at}


def policy_view(
    document: Mapping[str, Any] | None, last_run: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The `policy` of a Strategy resource: its stored version with its latest run."""
    if document is None:
        return None
    return {**document, "last_run": policy_run_document(last_run)}


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
        **operation_origin(operation.parameters),
        "created_at": rfc3339(operation.created_on),
        "updated_at": rfc3339(operation.modified_on),
    }


def operation_origin(parameters: Mapping[str, str] | None) -> dict[str, Any]:
    """Extension fields of an Operation: who asked for it (`request`: a platform's call or
    command; `policy`: the scheduler, with the policy version and period) and the model
    version it traded to (null when the request sent its allocations)."""
    parameters = parameters or {}
    model = parameters.get("model_version")
    by_policy = parameters.get("origin") == "policy"
    return {
        "origin": "policy" if by_policy else "request",
        "model_version": None if model is None else int(model),
        "policy_run": (
            {"policy_version": int(parameters["policy_version"]), "period": parameters["period"]}
            if by_policy
            else None
        ),
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
