"""Reading the event store's notification log for the outbox relay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent


@dataclass(frozen=True)
class StoredNotification:
    """A committed event as read from the log: its position, and its decoded state."""

    position: int
    topic: str
    aggregate_id: UUID
    version: int
    state: Mapping[str, Any]


class NotificationLog(Protocol):
    def read(self, after: int, limit: int) -> Sequence[StoredNotification]:
        """Up to `limit` notifications with positions greater than `after`, in order."""


class ApplicationNotificationLog:
    """The committed events of an eventsourcing Application, decoded, in log order."""

    def __init__(self, app: Application[UUID]) -> None:
        self.app = app

    def read(self, after: int, limit: int) -> Sequence[StoredNotification]:
        notifications = self.app.recorder.select_notifications(start=after + 1, limit=limit)
        return [
            StoredNotification(
                n.id,
                n.topic,
                UUID(str(n.originator_id)),
                n.originator_version,
                self._decode(n),
            )
            for n in notifications
        ]

    def _decode(self, stored: StoredEvent) -> dict[str, object]:
        # The mapper's own steps, without building an event object we would only take apart.
        mapper = self.app.mapper
        state = stored.state
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        decoded: dict[str, object] = mapper.transcoder.decode(state)
        return decoded
