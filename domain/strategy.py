"""Strategy: a container tied to one quoted currency, with an optional model and policy.

Every Operation carries the allocations it trades to. A Strategy may also store a model, its
target allocations, as numbered versions (each one an event, all kept): an Operation request
that sends no allocations then uses the current version and records which.

A rebalancing policy (`domain/policy.py`) is versioned the same way. Each period its
calendar runs is recorded once (`PolicyRunRecorded`, with the prices and counts that
decided it and the Operation it started, if any): that record is what makes a period run at
most once, whatever the scheduler does. When an instrument of the model can no longer be
traded the Strategy `needs_adjustment` and runs nothing by itself until a new model is set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.policy import Policy, parse_policy
from domain.statuses import StrategyStatus


class Strategy(Aggregate):
    @staticmethod
    def create_id(platform_id: str, request_id: UUID) -> UUID:
        return ids.strategy_id(platform_id, request_id)

    @event("Created")
    def __init__(
        self,
        platform_id: str,
        request_id: UUID,
        quoted_currency: str,
        metadata: dict[str, Any],
        request_hash: str,
    ) -> None:
        self.platform_id = platform_id
        self.request_id = request_id
        self.quoted_currency = quoted_currency
        self.metadata = metadata
        self.request_hash = request_hash

    def set_model(self, allocations: list[dict[str, str]]) -> None:
        """Record the next version of the model (allocations already validated against the
        catalogue, so tradable: it is the adjustment a broken model needs)."""
        self._model_set(version=self.model_version + 1, allocations=allocations)
        if self.status is StrategyStatus.NEEDS_ADJUSTMENT:
            self._status_changed(status=StrategyStatus.ACTIVE.value, assets=[], reason="model_set")

    @event("ModelSet")
    def _model_set(self, version: int, allocations: list[dict[str, str]]) -> None:
        self._model = allocations
        self._model_version = version

    def set_policy(self, policy: Policy) -> None:
        """Record the next version of the rebalancing policy (already validated)."""
        self._policy_set(version=self.policy_version + 1, policy=policy.as_dict())

    @event("PolicySet")
    def _policy_set(
        self, version: int, policy: dict[str, Any], timestamp: datetime | None = None
    ) -> None:
        # `timestamp` is the event's own (eventsourcing passes it to a body that asks): the
        # moment the version took effect, before which its calendar never runs.
        self._policy = policy
        self._policy_version = version
        self._policy_since = timestamp

    def record_policy_run(
        self,
        period: str,
        prices: dict[str, str],
        evaluated: int,
        outside: int,
        cooling: int,
        operation_id: UUID | None,
    ) -> None:
        """Record that the policy's run for `period` happened, and what it found."""
        self._policy_run_recorded(
            period=period,
            policy_version=self.policy_version,
            model_version=self.model_version,
            prices=prices,
            evaluated=evaluated,
            outside=outside,
            cooling=cooling,
            operation_id=operation_id,
        )

    @event("PolicyRunRecorded")
    def _policy_run_recorded(
        self,
        period: str,
        policy_version: int,
        model_version: int,
        prices: dict[str, str],
        evaluated: int,
        outside: int,
        cooling: int,
        operation_id: UUID | None,
        timestamp: datetime | None = None,
    ) -> None:
        self._last_policy_period = period
        self._last_policy_run = {
            "period": period,
            "policy_version": policy_version,
            "operation_id": None if operation_id is None else str(operation_id),
            "evaluated": evaluated,
            "outside": outside,
            "cooling": cooling,
            "at": timestamp,
        }

    def review_model(self, untradable: list[str]) -> bool:
        """Follow the catalogue: the model's assets that cannot be traded now (halted or
        disabled) put the Strategy in `needs_adjustment`, where nothing runs by itself; none
        left (the instrument enabled again) makes it `active`. True when the status changed
        (or its cause did); a no-op otherwise, so the review may run any number of times."""
        if untradable:
            if self.status is StrategyStatus.NEEDS_ADJUSTMENT and self.broken_assets == untradable:
                return False
            status, reason = StrategyStatus.NEEDS_ADJUSTMENT, "instrument_not_tradable"
        elif self.status is StrategyStatus.NEEDS_ADJUSTMENT:
            status, reason = StrategyStatus.ACTIVE, "instrument_tradable"
        else:
            return False
        self._status_changed(status=status.value, assets=untradable, reason=reason)
        return True

    @event("StatusChanged")
    def _status_changed(self, status: str, assets: list[str], reason: str) -> None:
        self._status = status
        self._broken_assets = assets

    # A Strategy created (or snapshotted) before models existed has neither attribute.
    @property
    def model(self) -> list[dict[str, str]] | None:
        model: list[dict[str, str]] | None = getattr(self, "_model", None)
        return model

    @property
    def model_version(self) -> int:
        """0 while the Strategy has no model."""
        return int(getattr(self, "_model_version", 0))

    # Like the model's, these attributes are absent from older Strategies and snapshots.
    @property
    def policy(self) -> Policy | None:
        stored: dict[str, Any] | None = getattr(self, "_policy", None)
        return None if stored is None else parse_policy(stored)

    @property
    def policy_document(self) -> dict[str, Any] | None:
        """The policy as it was set (the shape `Policy.as_dict` gives)."""
        stored: dict[str, Any] | None = getattr(self, "_policy", None)
        return stored

    @property
    def policy_version(self) -> int:
        """0 while the Strategy has no policy."""
        return int(getattr(self, "_policy_version", 0))

    @property
    def policy_since(self) -> datetime | None:
        since: datetime | None = getattr(self, "_policy_since", None)
        return since

    @property
    def last_policy_period(self) -> str | None:
        period: str | None = getattr(self, "_last_policy_period", None)
        return period

    @property
    def last_policy_run(self) -> dict[str, Any] | None:
        """What the latest automatic run found (period, counts, Operation, when)."""
        found: dict[str, Any] | None = getattr(self, "_last_policy_run", None)
        return found

    @property
    def status(self) -> StrategyStatus:
        return StrategyStatus(getattr(self, "_status", StrategyStatus.ACTIVE.value))

    @property
    def broken_assets(self) -> list[str]:
        return list(getattr(self, "_broken_assets", []))
