"""`strategies master-key rotate` on a real PostgreSQL: every sealed secret re-sealed under
the new key in one transaction, the previous release's format upgraded on the way, and a
rotation stopped at any point finished by the next run with nothing left that no key opens."""

from __future__ import annotations

import base64
import os
import subprocess
from typing import TYPE_CHECKING

import asyncpg
import pytest

from infra.postgres import platforms
from infra.postgres.master_key import KeyFiles, key_id, read_key_file, write_key_file
from infra.postgres.platforms import KeyCache, create_platform, find_key
from infra.postgres.secrets_box import SecretBox, secret_box_for
from infra.postgres.secrets_rotation import reseal_all
from infra.postgres.webhooks_store import PAYLOAD_TYPES, WebhookStore
from infra.settings import Settings
from tests.cli import run_cli
from tests.unit.infra.test_secret_box import RELEASE_1_AAD, RELEASE_1_VALUE

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

pytestmark = pytest.mark.integration

OLD, NEW = b"m" * 32, b"n" * 32  # RELEASE_1_VALUE was sealed under OLD


def _env(**variables: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not (name.startswith("STRATEGIES_") and name != "STRATEGIES_ENV_FILE")
        and name not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    return {**env, **variables}


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


async def _seed(
    url: str, box: SecretBox, platform_id: str = "PLAT01"
) -> tuple[str, bytes, UUID, str]:
    """A platform key and a webhook subscription sealed by `box`, and a key sealed by the
    previous release (revoked, still re-sealed: its row is kept)."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        credentials = await create_platform(pool, platform_id, "Rotation", box)
        await pool.execute(
            """INSERT INTO platform_api_keys
                   (api_key, platform_id, secret_sealed, passphrase_hash, status)
               VALUES ('AK1', $1, $2, 'scrypt$', 'revoked')""",
            platform_id,
            RELEASE_1_VALUE,
        )
        store = WebhookStore(pool, box)
        subscription, secret = await store.create(
            platform_id, "https://hooks.example/a", PAYLOAD_TYPES
        )
    finally:
        await pool.close()
    return credentials.api_key, base64.b64decode(credentials.secret_b64), subscription.id, secret


async def _opened_by(
    url: str, box: SecretBox, api_key: str, subscription: UUID
) -> tuple[bytes, bytes, str]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    try:
        record = await find_key(pool, api_key, box, cache=KeyCache())
        assert record is not None
        legacy = await pool.fetchval(
            "SELECT secret_sealed FROM platform_api_keys WHERE api_key = 'AK1'"
        )
        webhook = await WebhookStore(pool, box).secret(subscription)
        return record.secret, box.open(bytes(legacy), aad=RELEASE_1_AAD), webhook
    finally:
        await pool.close()


async def _sealed_headers(url: str) -> set[bytes]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            """SELECT substring(secret_sealed FROM 1 FOR 9) AS header FROM platform_api_keys
               UNION ALL SELECT substring(secret_sealed FROM 1 FOR 9) FROM webhook_subscriptions"""
        )
    finally:
        await connection.close()
    return {bytes(row["header"]) for row in rows}


async def test_a_key_from_the_environment_is_rotated_to_the_operators_new_key(
    fresh_database_url: str, tmp_path: Path
) -> None:
    api_key, secret, subscription, webhook_secret = await _seed(fresh_database_url, SecretBox(OLD))
    env = _env(DATABASE_URL=fresh_database_url, STRATEGIES_MASTER_KEY=_b64(OLD))

    refused = run_cli(env, "master-key", "rotate")
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.count("\n") == 1 and "--new-key-file" in refused.stderr

    new_key_file = tmp_path / "new.key"
    new_key_file.write_text(_b64(NEW) + "\n")
    for _run in range(2):  # the second: the operator has not switched the variable yet
        done = run_cli(env, "master-key", "rotate", "--new-key-file", str(new_key_file))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(
            "re-sealed 2 platform api key secrets, 1 webhook subscription secrets under key "
            f"{key_id(NEW).hex()}; now set STRATEGIES_MASTER_KEY"
        ), done.stdout
        assert done.stdout.count("\n") == 1

    assert await _sealed_headers(fresh_database_url) == {b"\x02" + key_id(NEW)}
    assert await _opened_by(fresh_database_url, SecretBox(NEW), api_key, subscription) == (
        secret,
        b"a secret sealed by release 1",
        webhook_secret,
    )


async def test_a_secret_no_key_opens_stops_the_rotation_before_anything_changes(
    fresh_database_url: str, tmp_path: Path
) -> None:
    await _seed(fresh_database_url, SecretBox(OLD))
    stranger = SecretBox(b"s" * 32).seal(b"?", aad=platforms.secret_aad("AK2"))
    connection = await asyncpg.connect(fresh_database_url)
    try:
        await connection.execute(
            """INSERT INTO platform_api_keys
                   (api_key, platform_id, secret_sealed, passphrase_hash, status)
               VALUES ('AK2', 'PLAT01', $1, 'scrypt$', 'revoked')""",
            stranger,
        )
        before = await connection.fetch("SELECT * FROM platform_api_keys ORDER BY api_key")
    finally:
        await connection.close()
    new_key_file = tmp_path / "new.key"
    new_key_file.write_text(_b64(NEW))

    env = _env(DATABASE_URL=fresh_database_url, STRATEGIES_MASTER_KEY=_b64(OLD))
    failed = run_cli(env, "master-key", "rotate", "--new-key-file", str(new_key_file))

    assert failed.returncode == 1
    assert (
        failed.stderr.startswith("error: platform_api_keys row AK2: ")
        and "nothing was changed" in failed.stderr
    )
    assert "Traceback" not in failed.stderr
    connection = await asyncpg.connect(fresh_database_url)
    try:
        assert await connection.fetch("SELECT * FROM platform_api_keys ORDER BY api_key") == before
    finally:
        await connection.close()


def _strategies(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(_env(STRATEGIES_DATA_DIR=str(data_dir)), *args)
    assert done.returncode == 0, done.stderr
    return done


async def test_embedded_mode_rotates_its_key_file_and_a_stopped_rotation_is_finished(
    tmp_path: Path,
) -> None:
    files = KeyFiles.of(tmp_path)
    write_key_file(files.current, OLD)  # the key the previous release made and sealed under
    started = _strategies(tmp_path, "db", "start")
    url = started.stdout.strip()
    # the hint names the key this folder's secrets need once DATABASE_URL is set
    assert f"export STRATEGIES_MASTER_KEY=$(cat {files.current})" in started.stderr
    try:
        _strategies(tmp_path, "platform", "create", "PLAT01", "--name", "Embedded")
        old = read_key_file(files.current)
        assert old == OLD
        api_key, secret, subscription, webhook_secret = await _seed(url, SecretBox(old), "PLAT02")

        # A rotation that stopped right after its commit: the new key is only in .next ...
        new = b"N" * 32
        write_key_file(files.next, new)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            await reseal_all(pool, SecretBox(new, [old]))
        finally:
            await pool.close()
        # ... and every process still opens everything
        box = secret_box_for(Settings(data_dir=tmp_path))
        assert await _opened_by(url, box, api_key, subscription) == (
            secret,
            b"a secret sealed by release 1",
            webhook_secret,
        )

        done = _strategies(tmp_path, "master-key", "rotate")  # finishes it, with that key
        assert f"under key {key_id(new).hex()}, now in {files.current}" in done.stdout
        assert (read_key_file(files.current), read_key_file(files.previous)) == (new, old)
        assert not files.next.exists()

        # Stopped after the files were swapped, before .next went: the old key stays kept.
        write_key_file(files.next, new)
        _strategies(tmp_path, "master-key", "rotate")
        assert (read_key_file(files.current), read_key_file(files.previous)) == (new, old)

        done = _strategies(tmp_path, "master-key", "rotate")  # a fresh one
        newest = read_key_file(files.current)
        assert newest not in (new, old) and read_key_file(files.previous) == new
        assert key_id(newest).hex() in done.stdout
        assert await _sealed_headers(url) == {b"\x02" + key_id(newest)}
        assert await _opened_by(url, SecretBox(newest), api_key, subscription) == (
            secret,
            b"a secret sealed by release 1",
            webhook_secret,
        )
    finally:
        _strategies(tmp_path, "db", "stop")
