"""Every read-model table together: listed, copied into a scratch schema, emptied for a rebuild.

The live tables (schema `public`) are made by the migrations (`infra/postgres/migrations`)
alone; `projections.schema` describes the columns the code reads and writes (a test checks
both agree). A scratch schema (a rebuild to compare, the audit's replay) gets copies of the
live tables, `CREATE TABLE ... (LIKE ... INCLUDING ALL)`: the same columns, defaults,
constraints and indexes, so its shape too comes from the migrations only.

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

# Two copies into one schema at once would race on the catalogue (IF NOT EXISTS does not
# make concurrent CREATEs safe).
_DDL_LOCK = zlib.crc32(b"projections.schema")
#: The schema's bookkeeping, kept by a rebuild: it meets those rows again under the same keys.
BOOKKEEPING_TABLES = ("projection_offsets", "projection_poisoned_events")


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


async def ensure_scratch(pool: asyncpg.Pool, schema: str) -> None:
    """Make `schema` a copy of the live read models' shape, where it lacks a table."""
    _check_scratch(schema)
    statements = [f"CREATE SCHEMA IF NOT EXISTS {quoted(schema)};"]
    live = quoted(DEFAULT_SCHEMA)
    statements += [
        f"CREATE TABLE IF NOT EXISTS {quoted(schema)}.{name} (LIKE {live}.{name} INCLUDING ALL);"
        for name in BOOKKEEPING_TABLES
    ]
    statements += [
        f"CREATE TABLE IF NOT EXISTS {table.qualified(schema)} "
        f"(LIKE {table.qualified(DEFAULT_SCHEMA)} INCLUDING ALL);"
        for table in read_model_tables()
    ]
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
        await connection.execute("\n".join(statements))


async def empty_read_models(pool: asyncpg.Pool, schema: str) -> None:
    """Empty the read-model tables of `schema` for a rebuild (not its offsets nor its
    poisoned events: a rebuild meets those again under the same keys). The live ones are
    truncated; a scratch schema's are copied afresh from the live ones, whatever an older
    release left there."""
    names = ", ".join(table.qualified(schema) for table in read_model_tables())
    if schema == DEFAULT_SCHEMA:
        async with pool.acquire() as connection:
            await connection.execute(f"TRUNCATE {names}")
        return
    _check_scratch(schema)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
        await connection.execute(f"DROP TABLE IF EXISTS {names}")
    await ensure_scratch(pool, schema)


def _check_scratch(schema: str) -> None:
    if quoted(schema) == quoted(DEFAULT_SCHEMA):
        raise ValueError("the live read models are made by `strategies db migrate`")
