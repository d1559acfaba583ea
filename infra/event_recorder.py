"""The events table's writer: eventsourcing's PostgreSQL recorder with a cheaper insert.

eventsourcing sends a save's events as ONE array of a composite type, which psycopg dumps in
text form: every event's state (bytea) is hex-escaped in Python, and composites have no
binary dumper. Four parallel arrays in binary form (uuid, bigint, text, bytea) carry the
same rows through the same single INSERT ... RETURNING notification_id, under the same
table lock, for about a fifth of the client CPU. Selected with APPLICATION_RECORDER_TOPIC
(see `infra.eventstore`), so everything else is eventsourcing's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Composed, Identifier

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent
    from psycopg import Cursor
    from psycopg.rows import DictRow


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
