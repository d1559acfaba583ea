"""Every read-model table together: created, and dropped for a rebuild, in one place.

Apart from `projections.schema` (how one table is described) so that the read-model modules
can use that description while this module lists their tables, without an import circle.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from projections import executions, operations, prices, strategies, traders
from projections.schema import DEFAULT_SCHEMA, Table, quoted

if TYPE_CHECKING:
    import asyncpg

# CREATE TABLE/INDEX IF NOT EXISTS still race on the catalogue when run concurrently.
_DDL_LOCK = zlib.crc32(b"projections.schema")

#: (tx_id, position) is the furthest event applied, in the relay's publish order
#: (`infra.bus.outbox.publish_order`); rows from before tx_id existed were (0, position).
OFFSETS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.projection_offsets (
    projection text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    "offset" bigint NOT NULL,
    position bigint NOT NULL,
    tx_id bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (projection, topic, partition)
);
DO $$
BEGIN
    -- Only when missing: ALTER TABLE locks the table even when there is nothing to add.
    IF NOT EXISTS (
        SELECT 1 FROM pg_attribute
        WHERE attrelid = '{schema}.projection_offsets'::regclass AND attname = 'tx_id'
    ) THEN
        ALTER TABLE {schema}.projection_offsets ADD COLUMN tx_id bigint NOT NULL DEFAULT 0;
    END IF;
END $$;
"""

#: Events the read models could not apply (`projections.poisoned`); the key is the event's
#: log position (`position:N`) or, for a record that is not an event, its digest.
POISONED_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.projection_poisoned_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    projection text NOT NULL,
    event_key text NOT NULL,
    position bigint,
    aggregate_id uuid,
    aggregate_version integer,
    event_type text,
    topic text,
    partition integer,
    "offset" bigint,
    record bytea NOT NULL,
    error_class text NOT NULL,
    error_message text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    resolved_at timestamptz,
    UNIQUE (projection, event_key)
);
CREATE INDEX IF NOT EXISTS projection_poisoned_events_open
    ON {schema}.projection_poisoned_events (projection, aggregate_id, position)
    WHERE status <> 'resolved';
"""


def read_model_tables() -> Sequence[Table]:
    """Every read-model table, in creation order (offsets bookkeeping excluded)."""
    return (
        strategies.STRATEGIES,
        traders.TRADERS,
        operations.OPERATIONS,
        executions.OPERATION_CHUNKS,
        executions.EXECUTIONS,
        prices.PRICES,
    )


async def ensure_schema(pool: asyncpg.Pool, schema: str = DEFAULT_SCHEMA) -> None:
    """Create the schema, the read-model tables and their indexes, the offsets and the
    poisoned events if missing (idempotent, safe to run from several processes at once)."""
    # The offsets first: a writer locks its offsets row before the read models, so adding
    # the offsets' column before CREATE INDEX IF NOT EXISTS share-locks the read models
    # takes the locks in the writers' order (the other order could deadlock with them).
    statements = [f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)};"]
    statements.append(OFFSETS_DDL.format(schema=quoted(schema)))
    statements += [table.create(schema) for table in read_model_tables()]
    statements.append(POISONED_DDL.format(schema=quoted(schema)))
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
        await connection.execute("\n".join(statements))


async def drop_read_models(pool: asyncpg.Pool, schema: str) -> None:
    """Drop the read-model tables of `schema` (not its offsets nor its poisoned events: a
    rebuild meets those again under the same keys)."""
    names = ", ".join(table.qualified(schema) for table in read_model_tables())
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
        await connection.execute(f"DROP TABLE IF EXISTS {names}")
