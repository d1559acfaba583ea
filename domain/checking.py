"""The credit check over participants as the store holds them: one function for the real
check of a chunk (`OperationStages._check`) and for a preview (`Trading.preview`), so a
preview decides exactly what the check would, from the same loaded aggregates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from domain import ids
from domain.allotment import Entry
from domain.credit import CreditCheck, CreditDecision, Outcome, TraderSnapshot
from domain.legs import Holdings
from domain.reference import Participant
from domain.requests import ParticipantOrder
from domain.trader import Trader


def check_orders(
    check: CreditCheck,
    platform_id: str,
    orders: Sequence[ParticipantOrder],
    traders: Mapping[str, Trader],
    profiles: Mapping[UUID, Any],
) -> list[CreditDecision]:
    """Every order's decision, in request order: `traders` by participant code (absent: no
    Trader yet), `profiles` the participants' aggregates by id (absent: never registered)."""
    decisions = []
    for order in orders:
        profile = profiles.get(ids.participant_id(platform_id, order.code))
        decisions.append(
            check.check(
                order,
                snapshot(traders.get(order.code)),
                profile.profile() if isinstance(profile, Participant) else None,
            )
        )
    return decisions


def snapshot(trader: Trader | None) -> TraderSnapshot | None:
    if trader is None:
        return None
    return TraderSnapshot(trader.status, trader.held_by, trader.holdings)


def approved_entry(
    decision: CreditDecision, order: ParticipantOrder, trader: Trader | None, *, buys: bool
) -> Entry | None:
    """What pricing and settlement take of an approved participant (`stages._entries`): its
    order, and the holdings it was held with where its legs depend on them (not for the
    Operations that buy from the float)."""
    if decision.outcome is not Outcome.APPROVED:
        return None
    if buys or trader is None:
        return Entry(order)
    return Entry(order, Holdings(dict(trader.positions), trader.cash))
