"""Which processes run which pipeline roles, and when each last made progress.

Every process running roles (`strategies worker ROLE...`, the engine inside `serve`) keeps
one row per role in `role_heartbeats`: its host and pid, when it started, when it last beat
(`last_seen`, the database's clock) and when it last handled a message (`last_progress`).
Progress is noted in memory and written with the beat, every `INTERVAL_S`: no write per
message. A row not refreshed within `LIVE_WITHIN_S` is a dead or frozen process; a clean exit
deletes its rows, a killed process's rows are forgotten after `FORGET_AFTER_S`.

`/health` reads the rows to say which roles are alive, and `projections rebuild` to refuse
while a process projects into the live read models (the two sides claim under one lock, so
a worker starting during a rebuild waits for it instead of writing into half-built tables).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar
from uuid import uuid4

import asyncpg
import structlog

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]

log = structlog.get_logger("infra.postgres.heartbeats")
T = TypeVar("T")

INTERVAL_S = 5.0
LIVE_WITHIN_S = 3 * INTERVAL_S
FORGET_AFTER_S = 24 * 3600.0
#: The pipeline roles a process can run (`strategies worker ROLE...`); `all` means every one.
ROLES = (
    "relay",
    "credit-check",
    "pricing",
    "execution",
    "commands",
    "projections",
    "webhooks",
    "scheduler",
)
#: The role a `projections rebuild` of the live schema claims while it runs.
REBUILD = "projections-rebuild"
_CLAIM_LOCK = zlib.crc32(b"portfolio-strategies.role-claims")
_OUTAGES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

_BEAT = """
INSERT INTO role_heartbeats (process_id, role, host, pid, started_at, last_seen, last_progress)
VALUES ($1, $2, $3, $4, $5, now(), $6)
ON CONFLICT (process_id, role) DO UPDATE
SET last_seen = now(), last_progress = EXCLUDED.last_progress
"""
_LIVE = "last_seen > now() - make_interval(secs => $1)"


@dataclass(frozen=True)
class RoleState:
    """A role across every process that ran it recently."""

    role: str
    live_processes: int
    last_seen: datetime
    last_progress: datetime | None
    #: When the newest of its live processes started (None: none live).
    last_started: datetime | None = None


@dataclass(frozen=True)
class LiveProcess:
    role: str
    host: str
    pid: int
    seconds_ago: float


class Heartbeat:
    """This process's rows: `await start()`, `progress(role)` per handled message, `stop()`."""

    def __init__(
        self, pool: asyncpg.Pool, roles: Iterable[str], *, interval: float | None = None
    ) -> None:
        self.pool = pool
        self.interval = interval or INTERVAL_S
        self.process_id = uuid4()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = datetime.now(UTC)
        self._progress: dict[str, datetime | None] = dict.fromkeys(sorted(roles))
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def progress(self, role: str) -> None:
        self._progress[role] = datetime.now(UTC)

    def tracked(
        self, role: str, handler: Callable[[T], Awaitable[None]]
    ) -> Callable[[T], Awaitable[None]]:
        """`handler`, noting progress for `role` whenever it returns (a failure is none)."""

        async def handle(item: T) -> None:
            await handler(item)
            self.progress(role)

        return handle

    async def start(self, *, unless: str | None = None) -> list[LiveProcess]:
        """Write this process's rows and keep them fresh. With `unless`, only while no
        process runs that role: its live processes are returned instead, nothing written."""
        if not self._progress:
            return []
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _CLAIM_LOCK)
            if unless is not None:
                blockers = await _live(connection, unless)
                if blockers:
                    return blockers
            await connection.executemany(_BEAT, self._rows())
        self._task = asyncio.create_task(self._keep_beating(), name="heartbeat")
        return []

    async def stop(self) -> None:
        """Stop beating and delete this process's rows (a clean exit is not a dead role)."""
        self._stop.set()
        if self._task is None:
            return
        await asyncio.wait({self._task}, timeout=self.interval)
        with contextlib.suppress(*_OUTAGES):
            await self.pool.execute(
                "DELETE FROM role_heartbeats WHERE process_id = $1",
                self.process_id,
                timeout=self.interval,
            )

    async def _keep_beating(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)
            if self._stop.is_set():
                return
            try:
                await self.pool.executemany(_BEAT, self._rows(), timeout=self.interval)
                await self.pool.execute(
                    "DELETE FROM role_heartbeats WHERE last_seen < now() - "
                    "make_interval(secs => $1)",
                    FORGET_AFTER_S,
                    timeout=self.interval,
                )
            except _OUTAGES as error:  # the database is away: beat again next time
                log.warning("heartbeat.failed", error=repr(error))

    def _rows(self) -> list[tuple[object, ...]]:
        return [
            (self.process_id, role, self.host, self.pid, self.started_at, progress)
            for role, progress in self._progress.items()
        ]


async def role_states(pool: asyncpg.Pool) -> dict[str, RoleState]:
    """Every role any process ran within `FORGET_AFTER_S`; none before the first beat."""
    try:
        records = await pool.fetch(
            f"""SELECT role, count(*) FILTER (WHERE {_LIVE}) AS live,
                       max(last_seen) AS last_seen, max(last_progress) AS last_progress,
                       max(started_at) FILTER (WHERE {_LIVE}) AS last_started
                FROM role_heartbeats GROUP BY role""",
            LIVE_WITHIN_S,
        )
    except asyncpg.UndefinedTableError:
        return {}
    return {
        r["role"]: RoleState(
            r["role"], r["live"], r["last_seen"], r["last_progress"], r["last_started"]
        )
        for r in records
    }


async def _live(connection: Connection, role: str) -> list[LiveProcess]:
    records = await connection.fetch(
        f"""SELECT host, pid, extract(epoch FROM now() - last_seen)::float8 AS ago
            FROM role_heartbeats WHERE role = $2 AND {_LIVE} ORDER BY host, pid""",
        LIVE_WITHIN_S,
        role,
    )
    return [LiveProcess(role, r["host"], r["pid"], r["ago"]) for r in records]
