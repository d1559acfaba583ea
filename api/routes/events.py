"""`GET /strategies/events` (extension): the caller's domain events in log order, by cursor.

The cursor stands for a position in the event store's notification log (in log order, which
reads only what can no longer be preceded by a later commit: `infra.eventstore.notification_log`),
so a client resumes exactly where it left off and never sees an event twice nor misses one; it
is opaque and bound to the platform (`api.event_cursor`), because plain positions would tell how
many events the other platforms wrote in between. Every event carries the cursor that resumes
after it.

Only Strategy, Operation, OperationChunk and Trader events are served, and only those of
aggregates whose creating event names the caller's platform. Ownership is resolved from that
creating event (in the page, else one primary-key read of the events table for the whole
page) and remembered in a bounded per-process index; the read models are not consulted
because they may lag the log.

A page is empty only when the caller is caught up: the request reads windows of
`SCAN_LIMIT` notifications until it has found some of the caller's events or reached the end
of the log, so other platforms' traffic cannot make an empty page. The work per request is
still bounded: after `SCAN_WINDOWS` windows without a match it answers with what it has and
`caught_up: false`, and the client asks again from `next` at once. So does a page cut short
by the response byte budget (`api.response_budget`): fewer events, `next` after the last one.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, cast
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from fastapi import APIRouter, Query, Request
from psycopg.sql import SQL, Identifier
from pydantic import BaseModel, Field

from api import event_cursor
from api.auth import PlatformDep, SignedRoute
from api.deps import EngineDep
from api.errors import Problem, ProblemError
from api.response_budget import ResponseBudgetDep, fitting
from infra.bus.outbox import event_message
from infra.eventstore.notification_log import ApplicationNotificationLog

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from eventsourcing.application import Application
    from eventsourcing.postgres import PostgresApplicationRecorder

    from infra.eventstore.notification_log import LogPosition, StoredNotification

router = APIRouter(tags=["events"], route_class=SignedRoute)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: Notifications read per window, and windows at most per request (the bound on its work).
SCAN_LIMIT = 10_000
SCAN_WINDOWS = 10
INDEX_SIZE = 200_000
PLATFORM_TYPES = frozenset({"Strategy", "Operation", "OperationChunk", "Trader"})
AUTH: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "Invalid cursor or limit."},
    401: {"model": Problem, "description": "Missing, wrong or expired signature."},
    403: {"model": Problem, "description": "The platform is disabled."},
}
_FIRST_EVENTS = (
    "SELECT originator_id, originator_version, topic, state FROM {events} "
    "WHERE originator_id = ANY(%s) AND originator_version = 1"
)


class PlatformIndex:
    """Aggregate id -> owning platform ("" for none), most recently used kept."""

    def __init__(self, size: int = INDEX_SIZE) -> None:
        self.size = size
        self._owners: OrderedDict[UUID, str] = OrderedDict()
        self._lock = threading.Lock()  # pages are read in worker threads

    def get(self, aggregate_id: UUID) -> str | None:
        with self._lock:
            owner = self._owners.get(aggregate_id)
            if owner is not None:
                self._owners.move_to_end(aggregate_id)
            return owner

    def put(self, aggregate_id: UUID, owner: str) -> None:
        with self._lock:
            self._owners[aggregate_id] = owner
            self._owners.move_to_end(aggregate_id)
            while len(self._owners) > self.size:
                self._owners.popitem(last=False)


def owner_of(state: dict[str, object], index: PlatformIndex) -> str | None:
    """The platform named by a creating event; a chunk without one defers to its Operation."""
    platform = state.get("platform_id")
    if platform:
        return str(platform)
    operation = state.get("operation_id")
    if operation is not None:
        return index.get(UUID(str(operation)))
    return ""


def _aggregate_type(topic: str) -> str:
    return topic.partition(":")[2].partition(".")[0]


@dataclass(frozen=True)
class Page:
    #: Each event's position, and the event as the feed shows it.
    events: list[tuple[LogPosition, dict[str, Any]]]
    #: The position the next page starts after.
    position: LogPosition
    #: The scan reached the end of the log: nothing of the caller's is left to read now.
    caught_up: bool


class EventFeed:
    """The synchronous part: reads the log and the creating events (run in a thread)."""

    def __init__(self, app: Application[UUID], index: PlatformIndex) -> None:
        self.app = app
        self.log = ApplicationNotificationLog(app)
        self.index = index

    def page(self, platform_id: str, after: LogPosition, limit: int) -> Page:
        """Up to `limit` of the platform's events after `after`. Windows are read until the
        page has events or the log ends; a full page stops at once, anywhere in a window."""
        events: list[StoredNotification] = []
        cursor = after
        for _ in range(SCAN_WINDOWS):
            cursor, at_end = self._scan_window(platform_id, cursor, limit, events)
            if at_end or events:
                return Page(self._messages(events), cursor, caught_up=at_end)
        return Page([], cursor, caught_up=False)

    def _scan_window(
        self, platform_id: str, cursor: LogPosition, limit: int, events: list[StoredNotification]
    ) -> tuple[LogPosition, bool]:
        """Read one window into `events`; returns the new cursor and whether it is the end of
        the log (a short read: nothing was left to read)."""
        scanned = 0
        while scanned < SCAN_LIMIT:
            wanted = min(MAX_LIMIT, SCAN_LIMIT - scanned)
            batch = self.log.read(cursor, wanted)
            self._learn(batch)
            for index, notification in enumerate(batch, 1):
                cursor = notification.at
                if self._belongs(notification, platform_id):
                    events.append(notification)
                    if len(events) == limit:
                        return cursor, index == len(batch) < wanted
            if len(batch) < wanted:
                return cursor, True
            scanned += len(batch)
        return cursor, False

    def _belongs(self, notification: StoredNotification, platform_id: str) -> bool:
        if _aggregate_type(notification.topic) not in PLATFORM_TYPES:
            return False
        return self.index.get(notification.aggregate_id) == platform_id

    def _learn(self, batch: Sequence[StoredNotification]) -> None:
        wanted = [n for n in batch if _aggregate_type(n.topic) in PLATFORM_TYPES]
        for n in wanted:
            if n.version == 1:
                self._remember(n.aggregate_id, dict(n.state))
        missing = {n.aggregate_id for n in wanted if self.index.get(n.aggregate_id) is None}
        if missing:
            for aggregate_id, state in self._first_events(missing):
                self._remember(aggregate_id, state)

    def _remember(self, aggregate_id: UUID, state: dict[str, object]) -> None:
        owner = owner_of(state, self.index)
        if owner is None:  # a chunk whose Operation is unknown here: look it up first
            operation = UUID(str(state["operation_id"]))
            for op_id, op_state in self._first_events({operation}):
                self._remember(op_id, op_state)
            owner = owner_of(state, self.index) or ""
        self.index.put(aggregate_id, owner)

    def _first_events(self, ids: Iterable[UUID]) -> list[tuple[UUID, dict[str, object]]]:
        recorder = cast("PostgresApplicationRecorder", self.app.recorder)
        events = Identifier(recorder.datastore.schema, recorder.events_table_name)
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(SQL(_FIRST_EVENTS).format(events=events), (list(ids),))
            rows = curs.fetchall()
        found = []
        for row in rows:
            stored = StoredEvent(
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )
            event = self.app.mapper.to_domain_event(stored)
            found.append((UUID(str(row["originator_id"])), dict(vars(event))))
        return found

    @staticmethod
    def _messages(
        events: Sequence[StoredNotification],
    ) -> list[tuple[LogPosition, dict[str, Any]]]:
        return [
            (
                n.at,
                event_message(n.position, n.topic, n.aggregate_id, n.version, n.state).model_dump(
                    mode="json"
                ),
            )
            for n in events
        ]


def _feed(request: Request, app: Application[UUID]) -> EventFeed:
    feed: EventFeed | None = getattr(request.app.state, "event_feed", None)
    if feed is None or feed.app is not app:
        feed = EventFeed(app, PlatformIndex())
        request.app.state.event_feed = feed
    return feed


def _bounded(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    # str.isdigit() also accepts "²", and int() refuses that and more than 4300 digits: both
    # were 500s. ASCII digits, at most as many as 2**63 has, are safe to convert.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not low <= int(raw) <= high:
        raise ProblemError(
            400, f"invalid_{name}", f"{name} must be an integer from {low} to {high}"
        )
    return int(raw)


def _cursor_keys(request: Request) -> tuple[bytes, ...]:
    """The current key first (it seals); a previous master key's still opens the cursors
    given before a rotation (`strategies master-key rotate`)."""
    keys: tuple[bytes, ...] | None = getattr(request.app.state, "events_cursor_keys", None)
    if keys is None:
        keys = request.app.state.secret_box.subkeys(event_cursor.PURPOSE)
        request.app.state.events_cursor_keys = keys
    return keys


def _position(keys: tuple[bytes, ...], platform_id: str, after: str | None) -> LogPosition:
    try:
        if after is not None and len(after) > 64:
            raise event_cursor.InvalidCursorError(after)
        for key in keys[:-1]:
            with contextlib.suppress(event_cursor.InvalidCursorError):
                return event_cursor.open_cursor(key, platform_id, after or event_cursor.START)
        return event_cursor.open_cursor(keys[-1], platform_id, after or event_cursor.START)
    except event_cursor.InvalidCursorError:
        raise ProblemError(
            400,
            "invalid_cursor",
            "after must be a cursor this feed gave you (an event's `cursor` or a page's "
            "`next`), or absent to start from the beginning",
        ) from None


class EventsPage(BaseModel):
    events: list[dict[str, Any]] = Field(
        description="The platform's domain events in log order, each with the `cursor` that "
        "resumes after it."
    )
    next: str = Field(description="The cursor to pass as `after` for the next page.")
    caught_up: bool = Field(
        description="True when this page reaches the end of the log: poll again later from "
        "`next`. False: more may follow, ask again from `next` at once (an empty page with "
        "false only when a long stretch of other platforms' events was skipped; fewer events "
        "than `limit` with false when the page reached the response byte budget)."
    )


@router.get(
    "/strategies/events",
    summary="List the platform's domain events (extension)",
    description="Pages through the platform's domain events in log order. A page is empty "
    "only when the caller is caught up (`caught_up: true`); pass `next` as `after` to "
    "continue.",
    responses=AUTH,
)
async def list_events(
    request: Request,
    platform: PlatformDep,
    engine: EngineDep,
    budget: ResponseBudgetDep,
    after: Annotated[
        str | None,
        Query(description="A cursor from this feed (an event's or a page's); absent: the start."),
    ] = None,
    limit: Annotated[
        str | None,
        Query(description=f"Events per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."),
    ] = None,
) -> EventsPage:
    keys = _cursor_keys(request)
    key = keys[0]
    cursor = _position(keys, platform.platform_id, after)
    size = _bounded(limit, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    feed = _feed(request, engine.trading)
    page = await engine.call(feed.page, platform.platform_id, cursor, size)
    events = []
    for at, event in page.events:
        del event["position"]  # positions leave the API only sealed in a cursor
        event["cursor"] = event_cursor.seal(key, platform.platform_id, at)
        events.append(event)
    sent = events[: fitting(events, budget)]
    if len(sent) < len(events):  # over the byte budget: resume after the last one sent
        return EventsPage(events=sent, next=sent[-1]["cursor"], caught_up=False)
    return EventsPage(
        events=sent,
        next=event_cursor.seal(key, platform.platform_id, page.position),
        caught_up=page.caught_up,
    )
