"""Trader: one participant inside one Strategy, and the history of its Executions.

Executions are recorded as Trader events (`HoldPlaced` opens one, `Settled` or `HoldReleased`
closes it) rather than as an aggregate of their own, so that a Trader's history is complete
on its own: an auditor rebuilds positions and cash from one stream, and a settlement changes
positions and closes its Execution in one atomic event. A Trader excluded by the credit check
gets no event at all (its rejection is recorded on the Operation), which is what makes "no
rejected Trader changed" provable.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.errors import HoldNotOwnedError, IllegalTransitionError, TraderHeldError
from domain.legs import Holdings, Leg
from domain.money import ZERO
from domain.statuses import OperationType, Side, TraderStatus


class Trader(Aggregate):
    @staticmethod
    def create_id(strategy_id: UUID, participant_code: str) -> UUID:
        return ids.trader_id(strategy_id, participant_code)

    @event("Opened")
    def __init__(
        self, strategy_id: UUID, platform_id: str, participant_code: str, auto_rebalance: bool
    ) -> None:
        self.strategy_id = strategy_id
        self.platform_id = platform_id
        self.participant_code = participant_code
        self.auto_rebalance = auto_rebalance
        self._status = TraderStatus.PENDING.value
        self.positions: dict[str, Decimal] = {}
        self.cash = ZERO
        self.held_by: UUID | None = None
        self.execution_id: UUID | None = None

    @property
    def status(self) -> TraderStatus:
        # Stored as a plain string: snapshots restore attributes as JSON types, not enums.
        return TraderStatus(self._status)

    @property
    def holdings(self) -> Holdings:
        return Holdings(dict(self.positions), self.cash)

    @property
    def account_label(self) -> str:
        return str(self.strategy_id)

    def place_hold(
        self,
        operation_id: UUID,
        execution_id: UUID,
        operation_type: OperationType,
        planned: tuple[Leg, ...] = (),
    ) -> None:
        """Open the Execution: the Trader is reserved for this Operation until it settles.

        The planned legs (at indicative prices) travel with the event so the Execution's
        whole life, from `awaiting_execution` to its end, reads from this stream alone.
        """
        if self.held_by == operation_id:
            return
        if self.held_by is not None:
            raise TraderHeldError(f"trader {self.id} is held by operation {self.held_by}")
        self._hold_placed(
            operation_id, execution_id, operation_type.value, [leg.as_dict() for leg in planned]
        )

    @event("HoldPlaced")
    def _hold_placed(
        self,
        operation_id: UUID,
        execution_id: UUID,
        operation_type: str,
        instructions: list[dict[str, str]],
    ) -> None:
        self.held_by = operation_id
        self.execution_id = execution_id

    def release_hold(self, operation_id: UUID, outcome: str, reason: str) -> None:
        """Close the Execution without trading (rejected after the check, or skipped)."""
        self._require_held_by(operation_id)
        self._hold_released(operation_id, self.execution_id, outcome, reason)

    @event("HoldReleased")
    def _hold_released(
        self, operation_id: UUID, execution_id: UUID | None, outcome: str, reason: str
    ) -> None:
        self.held_by = None
        self.execution_id = None

    def settle(
        self,
        operation_id: UUID,
        operation_type: OperationType,
        legs: tuple[Leg, ...],
        prices: dict[str, Decimal],
        funded: Decimal,
        paid_out: Decimal,
        auto_rebalance: bool | None = None,
    ) -> None:
        """Apply the Execution's fills at the locked prices and release the hold."""
        self._require_held_by(operation_id)
        after = self.holdings.after(legs, funded, paid_out)
        if after.cash < 0 or any(q < 0 for q in after.positions.values()):
            raise IllegalTransitionError(
                f"settling {self.id} would leave a negative balance: {after}"
            )
        instructions = [dict(leg.as_dict(), price=str(prices[leg.asset])) for leg in legs]
        self._settled(
            operation_id=operation_id,
            execution_id=self.execution_id,
            operation_type=operation_type.value,
            instructions=instructions,
            funded=funded,
            paid_out=paid_out,
            status=_status_after(operation_type, self.status).value,
            auto_rebalance=self.auto_rebalance if auto_rebalance is None else auto_rebalance,
        )

    @event("Settled")
    def _settled(
        self,
        operation_id: UUID,
        execution_id: UUID | None,
        operation_type: str,
        instructions: list[dict[str, str]],
        funded: Decimal,
        paid_out: Decimal,
        status: str,
        auto_rebalance: bool,
        timestamp: datetime | None = None,
    ) -> None:
        # `timestamp` is the event's own: a rebalance's is when a policy's cooldown starts.
        if operation_type == _REBALANCE:
            self._rebalanced_on = timestamp
        self.cash += funded - paid_out
        for instruction in instructions:
            quantity = Decimal(instruction["quantity"])
            notional = Decimal(instruction["notional"])
            buy = instruction["side"] == Side.BUY.value
            held = self.positions.get(instruction["underlying_currency"], ZERO)
            held += quantity if buy else -quantity
            self.cash += -notional if buy else notional
            if held:
                self.positions[instruction["underlying_currency"]] = held
            else:
                self.positions.pop(instruction["underlying_currency"], None)
        self._status = status
        self.auto_rebalance = auto_rebalance
        self.held_by = None
        self.execution_id = None

    @property
    def rebalanced_on(self) -> datetime | None:
        """When a rebalance (manual or automatic) last settled for this Trader; absent from
        Traders loaded from snapshots taken before it was kept, until their next one."""
        rebalanced: datetime | None = getattr(self, "_rebalanced_on", None)
        return rebalanced

    def change_auto_rebalance(self, auto_rebalance: bool) -> None:
        if self.status is TraderStatus.PENDING:
            raise IllegalTransitionError(f"trader {self.id} has not completed its enrollment")
        if auto_rebalance != self.auto_rebalance:
            self._auto_rebalance_changed(auto_rebalance)

    @event("AutoRebalanceChanged")
    def _auto_rebalance_changed(self, auto_rebalance: bool) -> None:
        self.auto_rebalance = auto_rebalance

    def _require_held_by(self, operation_id: UUID) -> None:
        if self.held_by != operation_id:
            raise HoldNotOwnedError(
                f"trader {self.id} is not held by operation {operation_id} (held by {self.held_by})"
            )


_REBALANCE = OperationType.REBALANCE.value


def _status_after(operation_type: OperationType, current: TraderStatus) -> TraderStatus:
    if operation_type is OperationType.ENROLLMENT:
        return TraderStatus.ACTIVE
    if operation_type is OperationType.LIQUIDATION:
        return TraderStatus.LIQUIDATED
    return current
