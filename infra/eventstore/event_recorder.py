"""The events table's writer: eventsourcing's PostgreSQL recorder with a cheaper insert.

eventsourcing sends a save's events as ONE array of a composite type, which psycopg dumps in
text form: every event's state (bytea) is hex-escaped in Python, and composites have no
binary dumper. Four parallel arrays in binary form (uuid, bigint, text, bytea) carry the
same rows through one INSERT ... RETURNING notification_id, under the same table lock, for
about a fifth of the client CPU.

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

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Composed, Identifier

from infra.eventstore.store import retry_dropped_connections, roster_table_name

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from psycopg import Cursor
    from psycopg.rows import DictRow

    from domain.roster import RosterEntry


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
        self._lock_table(curs)
        self._notify_channel(curs)
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
