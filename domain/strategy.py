"""Strategy: a container tied to one quoted currency. Allocations live on each Operation."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids


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
