"""Participant eligibility: who may trade, and which assets each participant may not hold.

A participant the platform never registered is not eligible: the engine must not open a
position for a natural person nobody vouched for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ParticipantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


@dataclass(frozen=True)
class ParticipantProfile:
    code: str
    status: ParticipantStatus = ParticipantStatus.ACTIVE
    restricted_assets: frozenset[str] = field(default_factory=frozenset)

    @property
    def may_trade(self) -> bool:
        return self.status is ParticipantStatus.ACTIVE

    def may_hold(self, asset: str) -> bool:
        return asset not in self.restricted_assets
