"""The PostgreSQL cluster on disk and the server commands run against it.

Knows the files (`postmaster.pid`, `strategies.conf`) and the binaries (initdb, pg_ctl); the
policy of when to start, reuse or stop lives in `infra/devservices/embedded_postgres.py`.
"""

from __future__ import annotations

import shutil
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from infra.devservices.postgres_os import EmbeddedPostgresError, RunAs, run, tail
from infra.logging import get_logger

log = get_logger(__name__)

SUPERUSER = "postgres"

# Sized for a 2-core development box running the API, workers and tests side by side.
# fsync and synchronous_commit keep their safe defaults: this data is meant to survive.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",  # TCP only: no socket paths to outgrow or go stale
    "max_connections": "200",
    "shared_buffers": "'256MB'",
    "effective_cache_size": "'1GB'",
    "work_mem": "'8MB'",
    "maintenance_work_mem": "'128MB'",
    "wal_buffers": "'16MB'",
    "max_wal_size": "'2GB'",
    "checkpoint_timeout": "'15min'",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "log_min_duration_statement": "'2s'",
}
_SETTINGS_FILE = "strategies.conf"


@dataclass(frozen=True)
class PidFile:
    """The lines of `postmaster.pid` that matter: pid, port and the status word."""

    pid: int
    port: int | None
    status: str  # starting, ready, stopping (PostgreSQL 10+ writes it on line 8)

    @classmethod
    def read(cls, pgdata: Path) -> PidFile | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if not lines or not lines[0].strip().isdigit():
            return cls(pid=0, port=None, status="garbled")
        port = lines[3].strip() if len(lines) > 3 else ""
        status = lines[7].strip() if len(lines) > 7 else "starting"
        return cls(int(lines[0]), int(port) if port.isdigit() else None, status)


def initdb(pgdata: Path, *, user: RunAs) -> None:
    """Initialise into a scratch folder and rename: a killed initdb leaves no half cluster."""
    scratch = pgdata.with_name(pgdata.name + ".initdb")
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(mode=0o700)
    user.chown(scratch)
    started_at = time.monotonic()
    command = ["initdb", "-D", str(scratch), "-U", SUPERUSER, "--auth-host=trust"]
    command += ["--auth-local=trust", "--encoding=UTF8", "--locale=C"]
    run(command, user=user, cwd=pgdata.parent, timeout=180)
    with (scratch / "postgresql.conf").open("a") as conf:
        conf.write(f"\ninclude_if_exists = '{_SETTINGS_FILE}'  # written by infra\n")
    scratch.rename(pgdata)
    duration_s = round(time.monotonic() - started_at, 2)
    log.info("postgres.initialised", data_dir=str(pgdata), duration_s=duration_s)


def write_server_settings(pgdata: Path, *, user: RunAs) -> None:
    """Rewritten on every start, so a change to SERVER_SETTINGS reaches existing clusters."""
    lines = [f"{name} = {value}" for name, value in SERVER_SETTINGS.items()]
    conf = pgdata / _SETTINGS_FILE
    conf.write_text(
        "# Written by infra/devservices/postgres_cluster.py on every start\n" + "\n".join(lines)
    )
    user.chown(conf)


def pg_ctl_start(pgdata: Path, log_file: Path, port: int, *, user: RunAs, timeout: float) -> None:
    # -w waits until postmaster.pid says "ready"; -p is the only per-start setting.
    command = ["pg_ctl", "-D", str(pgdata), "-l", str(log_file), "-w", "-t", str(int(timeout))]
    try:
        run(
            [*command, "-o", f"-p {port}", "start"],
            user=user,
            cwd=pgdata.parent,
            timeout=timeout + 10,
        )
    except EmbeddedPostgresError as exc:
        msg = f"PostgreSQL did not start on port {port}: {exc}\n--- tail of {log_file} ---\n"
        raise EmbeddedPostgresError(msg + tail(log_file)) from None


def pg_ctl_stop(pgdata: Path, *, user: RunAs, timeout: float) -> None:
    """Fast shutdown: roll back open transactions, checkpoint, exit."""
    command = ["pg_ctl", "-D", str(pgdata), "-w", "-t", str(int(timeout)), "-m", "fast", "stop"]
    run(command, user=user, cwd=pgdata.parent, timeout=timeout + 10)


def create_database(port: int, database: str) -> None:
    conninfo = f"host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres"
    with psycopg.connect(conninfo, connect_timeout=10, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if found.fetchone() is None:
            # A concurrent creator (another process's fixture) is not an error.
            with suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
