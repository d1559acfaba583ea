"""The numbered migrations: a fresh database, a second run, migrators racing, a database the
release before migrations made, and processes refusing a schema that is behind."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from infra.bootstrap.schema import SchemaBehindError, migrate_database, require_current
from infra.postgres.migrations import latest, migrate, migrations, schema_version
from projections.schema import DEFAULT_SCHEMA
from projections.tables import read_model_tables
from tests.cli import run_cli

pytestmark = pytest.mark.integration

BEFORE_MIGRATIONS = Path(__file__).parents[1] / "fixtures" / "schema_before_migrations.sql"
BEHIND = "error: database schema is at 0, this release needs {}: run strategies db migrate"
_SERVICES = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")


async def _shape(url: str) -> dict[str, Any]:
    """What the code counts on: every column (type, nullability, default), index and
    constraint of our tables, the types and functions; not the migrations' own table."""
    connection = await asyncpg.connect(url)
    try:
        columns = await connection.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default, "
            "is_identity FROM information_schema.columns WHERE table_schema = 'public' "
            "AND table_name <> 'schema_migrations' ORDER BY table_name, ordinal_position"
        )
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations' ORDER BY indexname"
        )
        constraints = await connection.fetch(
            "SELECT conrelid::regclass::text AS table_name, pg_get_constraintdef(oid) AS def "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
            "AND conrelid::regclass::text <> 'schema_migrations' ORDER BY 1, 2"
        )
        options = await connection.fetch(
            "SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND reloptions IS NOT NULL ORDER BY relname"
        )
        routines = await connection.fetch(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1"
        )
        types = await connection.fetch(
            "SELECT typname FROM pg_type WHERE typnamespace = 'public'::regnamespace "
            "AND typtype = 'c' AND typrelid IN (SELECT oid FROM pg_class WHERE relkind = 'c')"
        )
    finally:
        await connection.close()
    return {
        "columns": [tuple(r) for r in columns],
        "indexes": [tuple(r) for r in indexes],
        "constraints": [tuple(r) for r in constraints],
        "options": [tuple(r) for r in options],
        "routines": [r["proname"] for r in routines],
        "types": sorted(r["typname"] for r in types),
    }


async def _load_previous_release(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(BEFORE_MIGRATIONS.read_text())
    finally:
        await connection.close()


def _env(url: str, data_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _SERVICES}
    return env | {
        "DATABASE_URL": url,
        "STRATEGIES_DATA_DIR": str(data_dir),
        "STRATEGIES_MASTER_KEY": base64.b64encode(bytes(range(32))).decode(),
    }


async def test_a_fresh_database_is_migrated_once_and_a_second_run_is_a_no_op(
    empty_database_url: str,
) -> None:
    applied = await migrate_database(empty_database_url)
    assert [m.label for m in applied] == [m.label for m in migrations()]
    assert applied[0].label == "0001_baseline"
    assert await require_current(empty_database_url) == latest()
    shape = await _shape(empty_database_url)
    assert len(shape["indexes"]) > 40 and "es_insert_events_uuid" in shape["routines"]
    assert await migrate_database(empty_database_url) == []
    assert await _shape(empty_database_url) == shape


async def test_migrators_racing_apply_each_migration_once(empty_database_url: str) -> None:
    connections = [await asyncpg.connect(empty_database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in connections))
        assert sorted(len(applied) for applied in results) == [0, 0, 0, latest()]
        rows = await connections[0].fetch("SELECT version FROM schema_migrations ORDER BY 1")
        assert [r["version"] for r in rows] == list(range(1, latest() + 1))
    finally:
        for connection in connections:
            await connection.close()


async def test_the_read_models_described_in_code_are_the_ones_migrated(
    fresh_database_url: str,
) -> None:
    """A column added to a `Table` needs its migration, and the other way round."""
    connection = await asyncpg.connect(fresh_database_url)
    try:
        for table in read_model_tables():
            found = await connection.fetch(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                DEFAULT_SCHEMA,
                table.name,
            )
            assert {r["column_name"] for r in found} == set(table.column_names), table.name
            nullable = {r["column_name"] for r in found if r["is_nullable"] == "YES"}
            assert nullable == {c.name for c in table.columns if c.nullable}, table.name
            indexes = {
                r["indexname"]
                for r in await connection.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
                    DEFAULT_SCHEMA,
                    table.name,
                )
            }
            assert {f"{table.name}_{suffix}" for suffix, _ in table.indexes} <= indexes
    finally:
        await connection.close()


async def test_a_database_made_by_the_release_before_migrations_is_adopted_with_its_rows(
    empty_database_url: str, fresh_database_url: str, tmp_path: Path
) -> None:
    url = empty_database_url
    await _load_previous_release(url)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "INSERT INTO platforms (platform_id, name, status) VALUES ('OLD01', 'Kept', 'active');"
            "INSERT INTO relay_positions (name, position, tx_id) VALUES ('outbox', 42, 7);"
            "INSERT INTO trading_events (originator_id, originator_version, topic, state) "
            "VALUES (gen_random_uuid(), 1, 'x:Y.Z', '\\x7b7d');"
        )
        before = await connection.fetch("SELECT * FROM trading_events")
    finally:
        await connection.close()
    with pytest.raises(SchemaBehindError):
        await require_current(url)

    done = run_cli(_env(url, tmp_path), "db", "migrate")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        *(f"applied {m.label}" for m in migrations()),
        f"database schema is at {latest()}",
    ]
    again = run_cli(_env(url, tmp_path), "db", "migrate")
    assert again.stdout.splitlines() == [f"database schema is at {latest()} (nothing to apply)"]

    connection = await asyncpg.connect(url)
    try:
        assert await connection.fetchval("SELECT name FROM platforms") == "Kept"
        assert tuple(await connection.fetchrow("SELECT tx_id, position FROM relay_positions")) == (
            7,
            42,
        )
        assert await connection.fetch("SELECT * FROM trading_events") == before
        assert await schema_version(connection) == latest()
    finally:
        await connection.close()
    assert await _shape(url) == await _shape(fresh_database_url)


async def test_the_baseline_is_exactly_the_previous_release_schema(
    empty_database_url: str, fresh_database_url: str
) -> None:
    """0001 makes what the release before it made at start-up: nothing more, nothing less."""
    await _load_previous_release(empty_database_url)
    assert await _shape(empty_database_url) == await _shape(fresh_database_url)


@pytest.mark.parametrize("command", [["serve"], ["worker", "all"], ["platform", "list"]])
def test_a_process_refuses_a_schema_that_is_behind_with_one_line(
    empty_database_url: str, tmp_path: Path, command: list[str]
) -> None:
    refused = run_cli(_env(empty_database_url, tmp_path), *command, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines() == [BEHIND.format(latest())]


def test_the_status_shows_the_version_and_what_is_pending(
    empty_database_url: str, tmp_path: Path
) -> None:
    env = _env(empty_database_url, tmp_path)
    behind = run_cli(env, "db", "migrate", "--status")
    assert behind.returncode == 1
    assert behind.stdout.splitlines() == [
        f"database schema is at 0, this release needs {latest()}",
        *(f"pending {m.label}" for m in migrations()),
    ]
    assert run_cli(env, "db", "migrate").returncode == 0
    current = run_cli(env, "db", "migrate", "--status")
    assert current.returncode == 0
    assert current.stdout.splitlines() == [
        f"database schema is at {latest()}, this release needs {latest()}"
    ]
