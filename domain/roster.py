"""The roster: who a request that names nobody applies to, kept by the write side itself.

A rebalance without `participants` takes every active auto-rebalance Trader of the Strategy, a
liquidation with `"all": true` every active Trader. That scope must include every change the
platform was already told about: a PATCH answered 200 a moment ago, an enrollment whose
webhook said `settled`. A read model fed by the event log lags behind those writes, so the
roster is written with the Trader's own events, in the same transaction (`RosterEntry` rows
computed here and handed to `save`), and read back by the command that needs it.

Only the events that change a Trader's place in a scope produce an entry: the settlement of an
enrollment or a liquidation (status), and a change of `auto_rebalance`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.statuses import OperationType, TraderStatus
from domain.trader import Trader

_STATUS_CHANGING = frozenset({OperationType.ENROLLMENT.value, OperationType.LIQUIDATION.value})


@dataclass(frozen=True)
class RosterEntry:
    """A Trader's place in its Strategy's scopes, as of `version` of its stream."""

    trader_id: UUID
    strategy_id: UUID
    participant_code: str
    status: str
    auto_rebalance: bool
    version: int

    def in_scope(self, *, auto_rebalance_only: bool) -> bool:
        active = self.status == TraderStatus.ACTIVE.value
        return active and (self.auto_rebalance or not auto_rebalance_only)


def roster_changes(aggregates: Iterable[object]) -> list[RosterEntry]:
    """The entries a save of `aggregates` changes; call it before their events are collected."""
    entries = []
    for aggregate in aggregates:
        if isinstance(aggregate, Trader) and any(
            _moves_scope(event) for event in aggregate.pending_events
        ):
            entries.append(
                RosterEntry(
                    trader_id=aggregate.id,
                    strategy_id=aggregate.strategy_id,
                    participant_code=aggregate.participant_code,
                    status=aggregate.status.value,
                    auto_rebalance=aggregate.auto_rebalance,
                    version=aggregate.version,
                )
            )
    return entries


def _moves_scope(event: object) -> bool:
    kind = type(event).__qualname__
    if kind == "Trader.AutoRebalanceChanged":
        return True
    return kind == "Trader.Settled" and getattr(event, "operation_type", "") in _STATUS_CHANGING


def in_scope(
    entries: Mapping[UUID, RosterEntry], strategy_id: UUID, *, auto_rebalance_only: bool
) -> list[str]:
    """Participant codes of the Strategy's Traders in scope, sorted (request order of a scope)."""
    return sorted(
        entry.participant_code
        for entry in entries.values()
        if entry.strategy_id == strategy_id
        and entry.in_scope(auto_rebalance_only=auto_rebalance_only)
    )


def needs_scope(kind: OperationType, body: Mapping[str, Any]) -> bool | None:
    """Whether the request names nobody and takes the roster: None when it names its
    participants, else `auto_rebalance_only` (True for a rebalance, False for liquidate all)."""
    if kind is OperationType.REBALANCE and body.get("participants") is None:
        return True
    if kind is OperationType.LIQUIDATION and body.get("all") is True:
        return False
    return None
