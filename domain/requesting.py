"""From a request body to a validated Operation plan: every check before anything is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from domain.allocations import Allocations, parse_allocations
from domain.catalogue import InstrumentCatalogue, fiat_precision
from domain.errors import FieldError, InvalidRequestError
from domain.money import ZERO, parse_decimal
from domain.requests import (
    Limits,
    ParticipantOrder,
    parse_funded_participants,
    parse_named_participants,
)
from domain.statuses import OperationType

#: The kinds whose legs buy, so a cash buffer applies to them (a partial sell and a
#: liquidation only sell).
BUYING = frozenset({OperationType.ENROLLMENT, OperationType.TOP_UP, OperationType.REBALANCE})


@dataclass(frozen=True)
class OperationPlan:
    type: OperationType
    allocations: Allocations | None
    orders: tuple[ParticipantOrder, ...]
    parameters: dict[str, str]


def plan_operation(
    kind: OperationType,
    body: Mapping[str, Any],
    *,
    quoted_currency: str,
    catalogue: InstrumentCatalogue,
    limits: Limits,
    scope: Sequence[str] | None,
    model: tuple[Sequence[Mapping[str, str]] | None, int] = (None, 0),
    cash_buffer: Decimal = ZERO,
) -> OperationPlan:
    """Validate a request for `kind`; `scope` is the Strategy's auto-rebalance (or every)
    Trader when the request does not list participants itself. A request that sends no
    allocations uses the Strategy's `model` (allocations, version), checked again against
    today's catalogue, and its parameters record the version.

    `cash_buffer` (the Strategy policy's, already validated) is recorded as the parameter
    `cash_buffer` on the Operations that buy (enrollment, top-up, rebalance) when it is above
    0: every stage reads it from there, so a later policy change never alters an Operation
    already requested, and one recorded without it has no buffer."""
    allocations = None
    parameters: dict[str, str] = {}
    if cash_buffer > 0 and kind in BUYING:
        parameters["cash_buffer"] = str(cash_buffer)
    if kind is not OperationType.LIQUIDATION:
        raw_allocations: object = body.get("allocations")
        stored, version = model
        if raw_allocations is None and stored is not None:
            raw_allocations = list(stored)
            parameters["model_version"] = str(version)
        allocations = parse_allocations(
            raw_allocations,
            quoted_currency=quoted_currency,
            catalogue=catalogue,
            max_assets=limits.max_allocations,
        )
    raw = body.get("participants")
    if kind in (OperationType.ENROLLMENT, OperationType.TOP_UP, OperationType.PARTIAL_SELL):
        orders = parse_funded_participants(
            raw, currency_precision=fiat_precision(quoted_currency), limits=limits
        )
    elif kind is OperationType.REBALANCE:
        tolerance = _tolerance(body.get("drift_tolerance"))
        if tolerance is not None:
            parameters["drift_tolerance"] = str(tolerance)
        orders = _listed_or_scope(raw, scope, limits)
    else:
        everyone = body.get("all") is True
        if everyone and raw is not None:
            raise InvalidRequestError(
                'give either participants or "all": true, not both',
                errors=(FieldError("all", "cannot be combined with participants"),),
            )
        if everyone:
            parameters["all"] = "true"
        orders = _listed_or_scope(None if everyone else raw, scope if everyone else None, limits)
    return OperationPlan(kind, allocations, orders, parameters)


def _listed_or_scope(
    raw: object, scope: Sequence[str] | None, limits: Limits
) -> tuple[ParticipantOrder, ...]:
    if raw is not None:
        return parse_named_participants(raw, limits=limits)
    if scope is None:
        raise InvalidRequestError(
            "participants are required",
            errors=(FieldError("participants", "is required"),),
        )
    # A scope the engine resolved itself is not bounded by the per-call participant limit.
    return tuple(ParticipantOrder(code) for code in sorted(set(scope)))


def _tolerance(raw: object) -> Decimal | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidRequestError(
            'drift_tolerance must be a decimal string such as "0.02"',
            errors=(FieldError("drift_tolerance", "must be a decimal string"),),
        )
    value = parse_decimal(raw, "drift_tolerance")
    if not Decimal(0) <= value < 1:
        raise InvalidRequestError(
            "drift_tolerance must be at least 0 and below 1",
            errors=(FieldError("drift_tolerance", "must be in [0, 1)"),),
        )
    return value
