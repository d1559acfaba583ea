"""Strategy: a container tied to one quoted currency, with an optional model.

Every Operation carries the allocations it trades to. A Strategy may also store a model, its
target allocations, as numbered versions (each one an event, all kept): an Operation request
that sends no allocations then uses the current version and records which.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.policy import Policy


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
        """Record the next version of the model (allocations already validated)."""
        self._model_set(version=self.model_version + 1, allocations=allocations)

    @event("ModelSet")
    def _model_set(self, version: int, allocations: list[dict[str, str]]) -> None:
        self._model = allocations
        self._model_version = version

    # A Strategy created (or snapshotted) before models existed has neither attribute.
    @property
    def model(self) -> list[dict[str, str]] | None:
        model: list[dict[str, str]] | None = getattr(self, "_model", None)
        return model

    @property
    def model_version(self) -> int:
        """0 while the Strategy has no model."""
        return int(getattr(self, "_model_version", 0))

    @property
    def policy(self) -> Policy | None:
        return getattr(self, "_policy", None)
