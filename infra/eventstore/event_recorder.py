"""The events table's writer: eventsourcing's PostgreSQL recorder with a cheaper insert, no
table lock, and the log order the outbox relay reads.

eventsourcing sends a save's events as ONE array of a composite type, which psycopg dumps in
text form: every event's state (bytea) is hex-escaped in Python, and composites have no
binary dumper. Four parallel arrays in binary form (uuid, bigint, text, bytea) carry the
same rows through one INSERT ... RETURNING notification_id, for about a fifth of the client
CPU.

No table lock: eventsourcing takes `LOCK TABLE ... IN EXCLUSIVE MODE` for the whole insert
transaction, so that notification ids commit in order and a reader tailing `id > N` never
passes a gap filled later. That lock made every writer of every process queue on one table,
so it is gone (and so is the NOTIFY, which nobody LISTENs to and which serialises commits on a
database-wide lock). Instead each row records its writing transaction (`tx_id`, filled by the
column's default `pg_current_xact_id()`), and the log is read in (tx_id, notification_id)
order, only below the oldest transaction still in flight (`select_in_log_order`; why that is
safe: `docs/architecture.md`, "The log order"). Without the lock two saves of overlapping
aggregates may deadlock on each other's rows; PostgreSQL aborts one (an OperationalError) and
`retry_dropped_connections` runs it again, which then meets the winner's rows as a conflict.

It also runs the statements in a plain transaction, not in psycopg's pipeline mode: a save
of 100,000 events (registering 100,000 participants) is a ~40 MB message, and in pipeline
mode client and server then waited on each other for good (the server in ClientRead, the
client in `Pipeline.sync`; psycopg issue #685). The pipeline saved two local round trips.
It also keeps the roster (`domain.roster`): the `roster=` entries a save passes along are
upserted into `<events table minus _events>_roster` inside the events' own transaction, so a
scope read after an acknowledged write always sees it. Selected with APPLICATION_RECORDER_TOPIC
(see `infra.eventstore.persistence`); everything else is eventsourcing's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Notification
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Composed, Identifier

from infra.eventstore.store import retry_dropped_connections, roster_table_name

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from eventsourcing.persistence import StoredEvent
    from psycopg import Cursor
    from psycopg.rows import DictRow

    from domain.roster import RosterEntry

# xmin of the statement's own snapshot: every transaction below it has ended, so the rows
# below it are all the rows there will ever be below it (committed ones all visible here).
_SELECT_IN_LOG_ORDER = """
SELECT tx_id::text AS tx, notification_id, originator_id, originator_version, topic, state
FROM {events}
WHERE (tx_id, notification_id) > (%(tx)s::text::xid8, %(id)s)
    AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY tx_id, notification_id
LIMIT %(limit)s
"""
# The same window of the log, but only the rows of some event kinds (`Class.Event`, the
# topic after its module) come back, and the window's last row whatever its kind, so that a
# reader that acts on a few kinds (the relay with no event readers) still advances past the
# rest without their rows crossing the wire and becoming Python objects.
_SELECT_KINDS_IN_LOG_ORDER = """
WITH window_ AS (
    SELECT tx_id, notification_id, originator_id, originator_version, topic, state
    FROM {events}
    WHERE (tx_id, notification_id) > (%(tx)s::text::xid8, %(id)s)
        AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY tx_id, notification_id
    LIMIT %(limit)s
), numbered AS (
    SELECT *, row_number() OVER (ORDER BY tx_id DESC, notification_id DESC) AS from_end
    FROM window_
)
SELECT tx_id::text AS tx, notification_id, originator_id, originator_version, topic, state
FROM numbered
WHERE split_part(topic, ':', 2) = ANY(%(kinds)s::text[]) OR from_end = 1
ORDER BY tx_id, notification_id
"""
# ORDER BY keeps even a generic plan on the index: a sequential scan filtered for the last
# few rows would read the whole table.
_COUNT_AFTER = """
SELECT count(*) AS n FROM (
    SELECT FROM {events} WHERE (tx_id, notification_id) > (%(tx)s::text::xid8, %(id)s)
    ORDER BY tx_id, notification_id LIMIT %(cap)s
) AS later
"""


class ArrayInsertRecorder(PostgresApplicationRecorder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.insert_arrays_statement: Composed = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )
        events = Identifier(self.datastore.schema, self.events_table_name)
        self.events_table = events
        self.select_in_log_order_statement = SQL(_SELECT_IN_LOG_ORDER).format(events=events)
        self.select_kinds_statement = SQL(_SELECT_KINDS_IN_LOG_ORDER).format(events=events)
        self.count_after_statement = SQL(_COUNT_AFTER).format(events=events)
        roster = Identifier(self.datastore.schema, roster_table_name(self.events_table_name))
        # A later version only: two saves of one Trader are already ordered by the events'
        # version check in the same transaction, so this guard is a second line, not the first.
        self.upsert_roster_statement: Composed = SQL(
            "INSERT INTO {roster} AS r "
            "(trader_id, strategy_id, participant_code, status, auto_rebalance, version) "
            "SELECT * FROM unnest(%b::uuid[], %b::uuid[], %b::text[], %b::text[], %b::bool[], "
            "%b::bigint[]) "
            "ON CONFLICT (trader_id) DO UPDATE SET status = EXCLUDED.status, "
            "auto_rebalance = EXCLUDED.auto_rebalance, version = EXCLUDED.version "
            "WHERE r.version < EXCLUDED.version"
        ).format(roster=roster)

    @retry_dropped_connections
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return None
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            self._insert_events(curs, stored_events, **kwargs)  # eventsourcing's hook
            self._insert_stored_events(curs, stored_events, **kwargs)
            return [row["notification_id"] for row in curs.fetchall()]

    @retry_dropped_connections
    def select_in_log_order(
        self, after: tuple[int, int], limit: int, kinds: Collection[str] | None = None
    ) -> list[tuple[int, Notification]]:
        """Up to `limit` committed events after `after` (transaction id, notification id), each
        with its transaction id, in that order: only those of transactions older than every
        one still in flight, so nothing may later commit before the last one returned.
        With `kinds`, of those `limit` only the events of these kinds (`Class.Event`) and the
        last one."""
        params: dict[str, Any] = {"tx": str(after[0]), "id": after[1], "limit": limit}
        statement = self.select_in_log_order_statement
        if kinds is not None:
            params["kinds"] = sorted(kinds)
            statement = self.select_kinds_statement
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            rows = curs.fetchall()
        return [
            (
                int(row["tx"]),
                Notification(
                    id=row["notification_id"],
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                ),
            )
            for row in rows
        ]

    @retry_dropped_connections
    def count_after(self, after: tuple[int, int], cap: int) -> int:
        """How many committed events lie after `after` in log order, at most `cap`: those a
        reader can have now and those still waiting for an older transaction to end."""
        params = {"tx": str(after[0]), "id": after[1], "cap": cap}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.count_after_statement, params, prepare=True)
            row = curs.fetchone()
        assert row is not None
        return int(row["n"])

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        *,
        roster: Sequence[RosterEntry] = (),
        **kwargs: Any,
    ) -> None:
        super()._insert_events(curs, stored_events, **kwargs)
        self.upsert_roster(curs, roster)

    def upsert_roster(self, curs: Cursor[Any], roster: Sequence[RosterEntry]) -> None:
        if not roster:
            return
        curs.execute(
            self.upsert_roster_statement,
            (
                [e.trader_id for e in roster],
                [e.strategy_id for e in roster],
                [e.participant_code for e in roster],
                [e.status for e in roster],
                [e.auto_rebalance for e in roster],
                [e.version for e in roster],
            ),
            prepare=True,
        )

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        curs.execute(
            self.insert_arrays_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )
