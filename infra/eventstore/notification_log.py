"""Reading the event store's notification log for the outbox relay, in log order.

Log order is (writing transaction id, notification id), not the notification id alone: writers
no longer lock the table, so ids are not handed out in commit order, and a transaction with a
lower id may commit after one with a higher id. On PostgreSQL the log is read only below the
oldest transaction still in flight, which makes every position final once read
(`ArrayInsertRecorder.select_in_log_order`; the proof is in `docs/architecture.md`, "The log
order"). The in-memory recorder of the unit tests serialises its inserts, so there the ids
alone are in commit order and every transaction id reads as 0.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Notification, StoredEvent

from infra.eventstore.codec import TypedMapper, is_typed
from infra.eventstore.event_recorder import ArrayInsertRecorder


class LogPosition(NamedTuple):
    """A place in the log; tuples compare in log order. A position saved by a release that
    ordered by notification id alone, N, is (0, N): the rows it covered were all written
    before transaction ids were recorded, and read as 0."""

    transaction: int
    notification_id: int


START = LogPosition(0, 0)


def kind_of(topic: str) -> str:
    """An event's kind, `Class.Event`, from eventsourcing's topic `module:Class.Event`."""
    return topic.partition(":")[2]


@dataclass(frozen=True)
class StoredNotification:
    """A committed event as read from the log: its position, and its decoded state."""

    position: int
    topic: str
    aggregate_id: UUID
    version: int
    state: Mapping[str, Any]
    #: The id of the transaction that wrote it (0 if written before ids were recorded).
    transaction: int = 0
    #: The state holds JSON values only (read from the typed stored form): nothing to convert.
    plain: bool = False

    @property
    def at(self) -> LogPosition:
        return LogPosition(self.transaction, self.position)


class NotificationLog(Protocol):
    def read(
        self, after: LogPosition, limit: int, *, kinds: Collection[str] | None = None
    ) -> Sequence[StoredNotification]:
        """Up to `limit` notifications after `after`, in log order; a later read never
        returns one that sorts before the last one returned. With `kinds` (event kinds such
        as `Operation.Failing`), of those `limit` only the notifications of these kinds come
        back, and the last one whatever its kind (its state empty unless it is of one), so
        that a reader acting on a few kinds advances its position past the rest unread."""


class ApplicationNotificationLog:
    """The committed events of an eventsourcing Application, decoded, in log order."""

    def __init__(self, app: Application[UUID]) -> None:
        self.app = app

    def read(
        self, after: LogPosition, limit: int, *, kinds: Collection[str] | None = None
    ) -> Sequence[StoredNotification]:
        return [
            StoredNotification(
                n.id,
                n.topic,
                UUID(str(n.originator_id)),
                n.originator_version,
                self._decode(n) if kinds is None or kind_of(n.topic) in kinds else {},
                transaction,
                plain=isinstance(self.app.mapper, TypedMapper) and is_typed(n),
            )
            for transaction, n in self._select(after, limit, kinds)
        ]

    def first_state(self, aggregate_id: UUID) -> Mapping[str, Any] | None:
        """The decoded state of an aggregate's first event (None: no such aggregate): one
        primary-key read, for what only the creating event records (an Operation's trace)."""
        found = self.app.recorder.select_events(aggregate_id, lte=1)
        return self._decode(found[0]) if found else None

    def unpublished(self, after: LogPosition, cap: int) -> int:
        """How many committed events lie after `after` (at most `cap`), counting those a
        read cannot return yet because an older transaction is still in flight."""
        recorder = self.app.recorder
        if isinstance(recorder, ArrayInsertRecorder):
            return recorder.count_after(after, cap)
        return len(self._select(after, cap))

    def _select(
        self, after: LogPosition, limit: int, kinds: Collection[str] | None = None
    ) -> Sequence[tuple[int, Notification]]:
        recorder = self.app.recorder
        if isinstance(recorder, ArrayInsertRecorder):
            return recorder.select_in_log_order(after, limit, kinds)
        found = recorder.select_notifications(start=after.notification_id + 1, limit=limit)
        return [
            (0, n) for n in found if kinds is None or kind_of(n.topic) in kinds or n is found[-1]
        ]

    def _decode(self, stored: StoredEvent) -> dict[str, object]:
        mapper = self.app.mapper
        if isinstance(mapper, TypedMapper):
            return mapper.decode_state(stored)
        # The mapper's own steps, without building an event object we would only take apart.
        state = stored.state
        if mapper.cipher:
            state = mapper.cipher.decrypt(state)
        if mapper.compressor:
            state = mapper.compressor.decompress(state)
        decoded: dict[str, object] = mapper.transcoder.decode(state)
        return decoded
