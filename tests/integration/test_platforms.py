"""The platform registry on a real PostgreSQL: keys issued once, secrets sealed at rest."""

from __future__ import annotations

import base64
import stat
from typing import TYPE_CHECKING

import asyncpg
import psycopg
import pytest
import typer
from pydantic import SecretStr
from typer.testing import CliRunner

from infra.cli import platform as cli_platform
from infra.postgres.master_key import MasterKeyError, generate_master_key, load_master_key
from infra.postgres.platforms import (
    KeyCache,
    PlatformExistsError,
    PlatformIdInvalidError,
    PlatformNotFoundError,
    create_platform,
    disable_platform,
    enable_platform,
    find_key,
    list_platforms,
    revoke_key,
    rotate_key,
)
from infra.postgres.secrets_box import (
    SecretBox,
    SecretBoxError,
    secret_box_for,
    verify_passphrase,
)
from infra.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.integration

BOX = SecretBox(b"m" * 32)


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


async def test_created_key_is_found_with_its_secret_and_passphrase(pool: asyncpg.Pool) -> None:
    credentials = await create_platform(pool, "PLAT01", "Acme Wallet", BOX)

    record = await find_key(pool, credentials.api_key, BOX, cache=KeyCache())

    assert record is not None
    assert record.platform_id == "PLAT01"
    assert record.status == "active"
    assert record.secret == base64.b64decode(credentials.secret_b64)
    assert len(record.secret) == 32
    assert verify_passphrase(record.passphrase_hash, credentials.passphrase)
    assert not verify_passphrase(record.passphrase_hash, credentials.passphrase + "x")
    assert credentials.secret_b64 not in repr(credentials)
    assert credentials.passphrase not in repr(credentials)
    assert str(record.secret) not in repr(record)


async def test_secret_and_passphrase_are_not_stored_in_clear(pool: asyncpg.Pool) -> None:
    credentials = await create_platform(pool, "PLAT01", "Acme Wallet", BOX)
    secret = base64.b64decode(credentials.secret_b64)

    async with pool.acquire() as connection:
        sealed = await connection.fetchval(
            "SELECT secret_sealed FROM platform_api_keys WHERE api_key = $1", credentials.api_key
        )
        row_text = await connection.fetchval(
            "SELECT row_to_json(k)::text FROM platform_api_keys k WHERE api_key = $1",
            credentials.api_key,
        )

    assert secret not in sealed
    assert credentials.secret_b64.encode() not in sealed
    for clear in (credentials.secret_b64, secret.hex(), credentials.passphrase):
        assert clear not in row_text
    assert "scrypt$" in row_text


async def test_a_sealed_secret_copied_to_another_key_does_not_open(pool: asyncpg.Pool) -> None:
    first = await create_platform(pool, "PLAT01", "One", BOX)
    second = await create_platform(pool, "PLAT02", "Two", BOX)
    async with pool.acquire() as connection:
        await connection.execute(
            """UPDATE platform_api_keys SET secret_sealed =
                   (SELECT secret_sealed FROM platform_api_keys WHERE api_key = $1)
               WHERE api_key = $2""",
            first.api_key,
            second.api_key,
        )
    with pytest.raises(SecretBoxError):
        await find_key(pool, second.api_key, BOX, cache=KeyCache())


async def test_another_master_key_cannot_open_the_secrets(pool: asyncpg.Pool) -> None:
    credentials = await create_platform(pool, "PLAT01", "Acme", BOX)
    with pytest.raises(SecretBoxError):
        await find_key(pool, credentials.api_key, SecretBox(b"n" * 32), cache=KeyCache())


async def test_platform_ids_are_unique_and_well_formed(pool: asyncpg.Pool) -> None:
    await create_platform(pool, "PLAT01", "Acme", BOX)
    with pytest.raises(PlatformExistsError):
        await create_platform(pool, "PLAT01", "Someone else", BOX)
    with pytest.raises(PlatformIdInvalidError) as invalid:
        await create_platform(pool, "plat 01", "  ", BOX)
    assert {error.field for error in invalid.value.errors} == {"platform_id", "name"}


async def test_unknown_keys_are_not_found(pool: asyncpg.Pool) -> None:
    assert await find_key(pool, "no-such-key", BOX, cache=KeyCache()) is None


async def test_rotation_revokes_the_previous_key_at_once(pool: asyncpg.Pool) -> None:
    cache = KeyCache()
    old = await create_platform(pool, "PLAT01", "Acme", BOX)
    assert await find_key(pool, old.api_key, BOX, cache=cache) is not None  # now cached

    new = await rotate_key(pool, "PLAT01", BOX, cache=cache)

    assert new.api_key != old.api_key
    assert new.secret_b64 != old.secret_b64
    assert await find_key(pool, old.api_key, BOX, cache=cache) is None
    record = await find_key(pool, new.api_key, BOX, cache=cache)
    assert record is not None
    assert record.secret == base64.b64decode(new.secret_b64)


async def test_rotation_can_keep_the_previous_key_until_it_is_revoked(pool: asyncpg.Pool) -> None:
    cache = KeyCache()
    old = await create_platform(pool, "PLAT01", "Acme", BOX)
    new = await rotate_key(pool, "PLAT01", BOX, keep_previous=True, cache=cache)

    assert await find_key(pool, old.api_key, BOX, cache=cache) is not None
    assert await revoke_key(pool, old.api_key, cache=cache)
    assert not await revoke_key(pool, old.api_key, cache=cache)
    assert await find_key(pool, old.api_key, BOX, cache=cache) is None
    assert await find_key(pool, new.api_key, BOX, cache=cache) is not None


async def test_unknown_platforms_cannot_be_rotated_or_disabled(pool: asyncpg.Pool) -> None:
    with pytest.raises(PlatformNotFoundError):
        await rotate_key(pool, "NOPE01", BOX)
    with pytest.raises(PlatformNotFoundError):
        await disable_platform(pool, "NOPE01")


async def test_disabling_is_seen_at_once_by_this_process(pool: asyncpg.Pool) -> None:
    cache = KeyCache()
    credentials = await create_platform(pool, "PLAT01", "Acme", BOX)
    await find_key(pool, credentials.api_key, BOX, cache=cache)

    await disable_platform(pool, "PLAT01", cache=cache)
    disabled = await find_key(pool, credentials.api_key, BOX, cache=cache)
    await enable_platform(pool, "PLAT01", cache=cache)
    enabled = await find_key(pool, credentials.api_key, BOX, cache=cache)

    assert disabled is not None and disabled.status == "disabled"
    assert enabled is not None and enabled.status == "active"


async def test_another_process_change_is_seen_once_the_cache_entry_expires(
    pool: asyncpg.Pool,
) -> None:
    now = [1000.0]
    reader = KeyCache(ttl_s=5.0, clock=lambda: now[0])
    credentials = await create_platform(pool, "PLAT01", "Acme", BOX)
    await find_key(pool, credentials.api_key, BOX, cache=reader)

    await disable_platform(pool, "PLAT01", cache=KeyCache())  # the CLI, with its own cache
    still_cached = await find_key(pool, credentials.api_key, BOX, cache=reader)
    now[0] += 5.0
    refreshed = await find_key(pool, credentials.api_key, BOX, cache=reader)

    assert still_cached is not None and still_cached.status == "active"
    assert refreshed is not None and refreshed.status == "disabled"


async def test_list_shows_public_keys_only(pool: asyncpg.Pool) -> None:
    first = await create_platform(pool, "PLAT02", "Beta", BOX)
    second = await create_platform(pool, "PLAT01", "Acme", BOX)
    await disable_platform(pool, "PLAT02")

    rows = await list_platforms(pool)

    assert [(row.platform_id, row.status) for row in rows] == [
        ("PLAT01", "active"),
        ("PLAT02", "disabled"),
    ]
    assert rows[0].api_keys == (second.api_key,)
    assert rows[1].api_keys == (first.api_key,)
    assert first.secret_b64 not in repr(rows)


# The master key ------------------------------------------------------------------------


def test_embedded_mode_creates_a_private_key_file_once_and_reuses_it(tmp_path: Path) -> None:
    first = load_master_key(None, tmp_path, embedded=True)
    second = load_master_key(None, tmp_path, embedded=True)

    key_file = tmp_path / "master.key"
    assert first == second
    assert len(first) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [path.name for path in tmp_path.iterdir()] == ["master.key"]


def test_a_configured_key_wins_and_must_be_32_bytes_of_base64(tmp_path: Path) -> None:
    configured = generate_master_key()
    assert load_master_key(configured, tmp_path, embedded=False) == base64.b64decode(configured)
    assert not (tmp_path / "master.key").exists()
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(MasterKeyError):
            load_master_key(bad, tmp_path, embedded=True)


def test_an_external_database_needs_a_configured_key(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="STRATEGIES_MASTER_KEY"):
        load_master_key(None, tmp_path, embedded=False)


def test_settings_in_embedded_mode_give_a_box_from_the_data_folder(tmp_path: Path) -> None:
    box = secret_box_for(Settings(data_dir=tmp_path))
    again = secret_box_for(Settings(data_dir=tmp_path))
    assert again.open(box.seal(b"secret")) == b"secret"
    assert "m" * 8 not in repr(box)


def test_sealed_values_are_authenticated() -> None:
    sealed = BOX.seal(b"a secret of some length" * 3, aad=b"key-1")
    assert BOX.open(sealed, aad=b"key-1") == b"a secret of some length" * 3
    assert BOX.seal(b"same", aad=b"k") != BOX.seal(b"same", aad=b"k")  # fresh nonce
    tampered = bytearray(sealed)
    tampered[20] ^= 1
    for bad, aad in ((bytes(tampered), b"key-1"), (sealed, b"key-2"), (sealed[:10], b"key-1")):
        with pytest.raises(SecretBoxError):
            BOX.open(bad, aad=aad)


# The CLI -------------------------------------------------------------------------------


class KeyedSettings(Settings):
    """Settings with the `master_key` field the composition root adds."""

    master_key: SecretStr | None = None


def cli(settings: Settings) -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def configure(ctx: typer.Context) -> None:
        ctx.obj = settings

    root.add_typer(cli_platform.app, name="platform")
    return root


def test_cli_prints_credentials_once_and_lists_no_secret(
    fresh_database_url: str, tmp_path: Path
) -> None:
    settings = KeyedSettings(
        database_url=fresh_database_url,
        data_dir=tmp_path,
        master_key=SecretStr(generate_master_key()),
    )
    runner = CliRunner()
    app = cli(settings)

    created = runner.invoke(app, ["platform", "create", "PLAT01", "--name", "Acme Wallet"])
    assert created.exit_code == 0, created.output
    printed = dict(
        line.split(":", 1) for line in created.stdout.splitlines() if line.count(":") >= 1
    )
    api_key, secret, passphrase = (
        printed[name].strip() for name in ("api key", "secret", "passphrase")
    )
    assert len(base64.b64decode(secret)) == 32
    assert "shown only this once" in created.stderr

    listed = runner.invoke(app, ["platform", "list"])
    assert listed.exit_code == 0, listed.output
    assert "PLAT01" in listed.stdout and api_key in listed.stdout
    assert secret not in listed.output and passphrase not in listed.output

    with psycopg.connect(fresh_database_url) as connection:
        stored = connection.execute("SELECT row_to_json(k)::text FROM platform_api_keys k")
        assert all(secret not in row[0] and passphrase not in row[0] for row in stored)

    again = runner.invoke(app, ["platform", "create", "PLAT01", "--name", "Other"])
    assert again.exit_code == 1
    assert "already exists" in again.stderr

    rotated = runner.invoke(app, ["platform", "rotate-key", "PLAT01"])
    assert rotated.exit_code == 0, rotated.output
    assert secret not in rotated.stdout and "secret:" in rotated.stdout

    for command in (["disable", "PLAT01"], ["enable", "PLAT01"]):
        result = runner.invoke(app, ["platform", *command])
        assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["platform", "revoke-key", api_key]).exit_code == 1  # rotated
    assert runner.invoke(app, ["platform", "disable", "NOPE01"]).exit_code == 1


def test_cli_refuses_an_external_database_without_master_key(
    fresh_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=fresh_database_url, data_dir=tmp_path)
    result = CliRunner().invoke(cli(settings), ["platform", "create", "PLAT01", "--name", "A"])
    assert result.exit_code == 2  # a configuration error, like a bad variable
    assert "STRATEGIES_MASTER_KEY" in result.stderr
