"""The embedded server: starts in an empty folder, keeps its data, survives a killed run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import asyncpg
import pytest

from infra.devservices.embedded_postgres import EmbeddedPostgres
from infra.devservices.postgres_os import pid_alive

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


async def fetch_value(url: str, query: str) -> object:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


def wait_until_dead(pid: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive after {seconds}s"
        time.sleep(0.05)


async def test_starts_in_an_empty_folder_and_answers_asyncpg_over_tcp(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    with server:
        assert server.url.startswith("postgresql://postgres@127.0.0.1:")
        assert server.url.endswith("/strategies")
        assert await fetch_value(server.url, "SELECT current_database()") == "strategies"
        assert await fetch_value(server.url, "SHOW max_connections") == "200"
        assert await fetch_value(server.url, "SHOW fsync") == "on"
        status = server.status()
        assert status is not None
    assert server.status() is None
    wait_until_dead(status.pid)


async def test_restart_reuses_the_data_and_the_port(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as first:
        conn = await asyncpg.connect(first.url)
        await conn.execute("CREATE TABLE kept (note text); INSERT INTO kept VALUES ('hello')")
        await conn.close()
        first_url = first.url

    with EmbeddedPostgres(tmp_path / "pg") as second:
        assert await fetch_value(second.url, "SELECT note FROM kept") == "hello"
        assert second.url == first_url  # the last port is preferred when it is free


async def test_start_succeeds_after_the_server_was_killed(tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as first:
        await fetch_value(first.url, "CREATE TABLE survivor AS SELECT 1 AS n")
        status = first.status()
        assert status is not None
        os.kill(status.pid, signal.SIGKILL)
        wait_until_dead(status.pid)
        assert (first.pgdata / "postmaster.pid").exists()  # the stale file is left behind

        second = EmbeddedPostgres(tmp_path / "pg")
        with second:
            assert await fetch_value(second.url, "SELECT n FROM survivor") == 1
            assert second.owns_server


async def test_pid_file_naming_another_live_program_does_not_block_start(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "pg"
    with EmbeddedPostgres(folder) as first:
        status = first.status()
        assert status is not None
        os.kill(status.pid, signal.SIGKILL)
        wait_until_dead(status.pid)
        pid_file = first.pgdata / "postmaster.pid"
        lines = pid_file.read_text().splitlines()
        lines[0] = str(os.getpid())  # a live process that is not postgres
        pid_file.write_text("\n".join(lines) + "\n")

        with EmbeddedPostgres(folder) as second:
            assert await fetch_value(second.url, "SELECT 1") == 1


async def test_second_handle_reuses_the_running_server_and_leaves_it_running(
    tmp_path: Path,
) -> None:
    with EmbeddedPostgres(tmp_path / "pg") as first:
        with EmbeddedPostgres(tmp_path / "pg") as second:
            assert second.url == first.url
            assert not second.owns_server
        assert first.status() is not None
        assert await fetch_value(first.url, "SELECT 1") == 1
    assert first.status() is None


def run_python(code: str, env_folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, str(env_folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


START_IN_CHILD = """
import os, signal, sys
from pathlib import Path
from infra.devservices.embedded_postgres import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[1]))
server.start()
"""


def test_process_that_started_the_server_stops_it_at_exit(tmp_path: Path) -> None:
    result = run_python(START_IN_CHILD, tmp_path / "pg")  # exits without calling stop()
    assert result.returncode == 0, result.stderr
    assert EmbeddedPostgres(tmp_path / "pg").status() is None


def test_server_orphaned_by_a_killed_owner_is_adopted_and_stopped(tmp_path: Path) -> None:
    killed = START_IN_CHILD + "os.kill(os.getpid(), signal.SIGKILL)\n"
    result = run_python(killed, tmp_path / "pg")
    assert result.returncode == -signal.SIGKILL, result.stderr
    orphan = EmbeddedPostgres(tmp_path / "pg")
    assert orphan.status() is not None  # nobody stopped it

    with orphan:
        assert orphan.owns_server
    assert orphan.status() is None


def test_detached_server_is_left_running_until_shutdown(tmp_path: Path) -> None:
    detached = EmbeddedPostgres(tmp_path / "pg", keep_running=True)
    detached.start()
    detached.stop()  # not an owner: no effect
    with EmbeddedPostgres(tmp_path / "pg") as user:
        assert not user.owns_server
    assert detached.status() is not None
    assert detached.shutdown() is True
    assert detached.status() is None
    assert detached.shutdown() is False


OWNER_UNTIL_TOLD = (
    START_IN_CHILD
    + """
print("ready", flush=True)
sys.stdin.readline()
"""
)


def test_the_server_outlives_its_owner_while_another_process_uses_it(
    tmp_path: Path,
) -> None:
    """`serve` started the embedded server and a `worker` reuses it: `serve` leaving must not
    take the database from the worker; the last one out stops it."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER_UNTIL_TOLD, str(tmp_path / "pg")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        while (line := owner.stdout.readline()) and line.strip() != "ready":
            pass  # the server's log lines come first
        assert line.strip() == "ready"
        with EmbeddedPostgres(tmp_path / "pg") as user:
            assert not user.owns_server
            owner.communicate("exit\n", timeout=60)  # the owner exits normally (atexit stop)
            assert owner.returncode == 0
            assert user.status() is not None
            assert asyncio.run(fetch_value(user.url, "SELECT 1")) == 1
        assert user.status() is None  # the last user stopped it
    finally:
        if owner.poll() is None:
            owner.kill()
