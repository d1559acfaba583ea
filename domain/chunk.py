"""OperationChunk: one slice of an Operation's participants, the unit of work of the workers.

Chunks are aggregates of their own so that a worker checking or settling chunk 17 of a
100,000-Trader Operation loads 500 orders, not 100,000, and so that chunks are written in
parallel without contending on one stream. The Operation keeps only their summaries.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import IllegalTransitionError
from domain.requests import ParticipantOrder


def chunk_id(operation_id: UUID, index: int) -> UUID:
    return uuid5(operation_id, f"chunk:{index}")


class OperationChunk(Aggregate):
    @staticmethod
    def create_id(operation_id: UUID, index: int) -> UUID:
        return chunk_id(operation_id, index)

    @event("Planned")
    def __init__(
        self,
        operation_id: UUID,
        index: int,
        orders: list[dict[str, str | bool]],
        platform_id: str = "",
        strategy_id: UUID | None = None,
    ) -> None:
        # platform and strategy ride along so read models can place the chunk's rejections
        # without waiting for the Operation's own stream.
        self.platform_id = platform_id
        self.strategy_id = strategy_id
        self.operation_id = operation_id
        self.index = index
        self.orders = orders
        self.stage = "planned"
        self.summary: dict[str, Any] = {}
        #: Per participant code: {"outcome", "reasons", "trader_id", "execution_id"}, and for an
        #: approved Trader whose legs depend on its holdings, the `positions` and `cash` it was
        #: held with (what pricing and settlement allot from).
        self.decisions: dict[str, dict[str, Any]] = {}

    @property
    def participant_orders(self) -> list[ParticipantOrder]:
        return [ParticipantOrder.from_dict(o) for o in self.orders]

    def record_check(self, decisions: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        """`summary` is what the Operation's barrier needs (counts, flows, cash): kept here so
        the barrier can be recorded in a later, small transaction (see `domain.stages`)."""
        self._require("planned")
        self._checked(decisions, summary)

    @event("Checked")
    def _checked(self, decisions: list[dict[str, Any]], summary: dict[str, Any]) -> None:
        self.decisions = {d["participant_code"]: d for d in decisions}
        self.summary = summary
        self.stage = "checked"

    def record_settlement(self, outcomes: list[dict[str, str]], summary: dict[str, Any]) -> None:
        """`outcomes`: per approved participant, settled or skipped (dust at the locked price)."""
        self._require("checked")
        self._settled(outcomes, summary)

    @event("Settled")
    def _settled(self, outcomes: list[dict[str, str]], summary: dict[str, Any]) -> None:
        for outcome in outcomes:
            self.decisions[outcome["participant_code"]].update(outcome)
        self.summary = summary
        self.stage = "settled"

    def record_release(self, reason: str, outcome: str = "rejected") -> None:
        """Every approved participant's hold released without trading: the Operation failed
        (`rejected`) or was cancelled (`cancelled`)."""
        self._require("checked")
        self._released(reason, len(self.approved_codes), outcome)

    @event("Released")
    def _released(
        self, reason: str, released: int, outcome: str = "rejected", cancelled: int = 0
    ) -> None:
        for decision in self.decisions.values():
            if decision["outcome"] == "approved":
                decision.update(outcome=outcome, reasons=reason)
        self.summary = {"released": released, **({"cancelled": cancelled} if cancelled else {})}
        self.stage = "released"

    def record_cancelled(self, decisions: list[dict[str, Any]], reason: str) -> None:
        """The Operation was cancelled before this chunk was checked: every participant's
        Execution is `cancelled` (recorded as its check, so it reads like any other), and
        the chunk is released at once, holding nothing."""
        self._require("planned")
        cancelled = len(decisions)
        self._checked(
            decisions,
            {
                "approved": 0,
                "rejected": 0,
                "skipped": 0,
                "cancelled": cancelled,
                "flows": {},
                "cash": "0",
            },
        )
        self._released(reason, 0, "cancelled", cancelled)

    @property
    def approved_codes(self) -> list[str]:
        return [c for c, d in self.decisions.items() if d["outcome"] == "approved"]

    def _require(self, stage: str) -> None:
        if self.stage != stage:
            raise IllegalTransitionError(
                f"chunk {self.index} of operation {self.operation_id} is {self.stage}, not {stage}"
            )
