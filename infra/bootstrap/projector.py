"""Embedded mode's read models in a process of their own (`STRATEGIES_EMBEDDED_PROJECTIONS`).

An embedded engine is one Python process: its stages, relay and read models share one
interpreter lock, and the read models took about a quarter of it. With `process` (the
default) the engine starts `strategies projections follow` as a child, which follows the
event store's log (`projections.follower`) and records the webhooks it implies; the engine
keeps its stages and the sender. With `inline` the same follower runs as a task of the engine.

`follow` is the child's body; `ProjectorProcess` is the parent's handle on it. It starts the
child and waits until it follows (the child says `READY` on its stdout, so an engine never
reports started while its read models are still importing); it starts it again when it dies
(its position is in the database, so nothing is lost or doubled) and stops it with SIGTERM
once the engine has drained. The child also stops when its parent is gone, so a killed
engine leaves no orphan writing into the read models.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable

import asyncpg
import structlog

from infra.bootstrap.children import ROOT, strategies_command
from infra.eventstore.notification_log import ApplicationNotificationLog
from infra.eventstore.store import PostgresTrading
from infra.postgres.heartbeats import REBUILD, Heartbeat
from infra.postgres.webhooks_store import WebhookStore
from infra.settings import Settings
from projections.follower import LogFollower
from projections.writer import ProjectionWriter
from workers.webhooks import WebhookRecorder

log = structlog.get_logger("infra.bootstrap.projector")

#: How often the child looks whether its parent is still there.
PARENT_CHECK_S = 1.0
#: Pause before a child that died is started again (doubling up to the maximum).
RESTART_DELAY_S = 0.5
MAX_RESTART_DELAY_S = 10.0
#: A child that ran this long before dying is restarted after the shortest pause again.
STABLE_S = 60.0
STOP_GRACE_S = 30.0
#: How long the engine waits for a new child to say it follows the log.
READY_TIMEOUT_S = 60.0
READY = b"following the log\n"
LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


def follower_for(
    pool: asyncpg.Pool,
    trading: PostgresTrading,
    recorder: WebhookRecorder,
    on_applied: Callable[[], None] | None = None,
) -> LogFollower:
    writer = ProjectionWriter(pool, notifier=recorder)
    return LogFollower(
        writer,
        ApplicationNotificationLog(trading),
        on_applied=(lambda _: on_applied()) if on_applied else None,
    )


async def follow(settings: Settings, database_url: str, *, parent: int | None = None) -> None:
    """The child's body: follow the log into the read models until SIGTERM, SIGINT or the
    death of `parent`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Nothing of it is loaded: it only reads the log.
    trading = await asyncio.to_thread(
        functools.partial(PostgresTrading, database_url, cache_size=0, pool_size=2)
    )
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=3)
    watcher = asyncio.create_task(_watch_parent(parent, stop)) if parent else None
    heartbeat = Heartbeat(pool, ["projections"])
    try:
        # records only: the engine's sender sends
        recorder = WebhookRecorder(WebhookStore(pool, None))
        while blockers := await heartbeat.start(unless=REBUILD):
            log.warning(
                "projections.waiting_for_rebuild",
                processes=[f"{b.host}:{b.pid}" for b in blockers],
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), heartbeat.interval)
            if stop.is_set():
                return
        follower = follower_for(pool, trading, recorder, lambda: heartbeat.progress("projections"))
        await follower.run(stop, started=_say_ready)
    finally:
        if watcher:
            watcher.cancel()
        await heartbeat.stop()
        await pool.close()
        await asyncio.to_thread(trading.close)


def _say_ready() -> None:
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    while os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PARENT_CHECK_S)
        if stop.is_set():
            return
    log.warning("projections.parent_gone", parent=parent)
    stop.set()


class ProjectorProcess:
    """The parent's handle on the `strategies projections follow` child."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._stopping = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        """Start the child and wait until it follows the log."""
        await self._spawn()
        assert self.process is not None and self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), READY_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if line != READY:
            with contextlib.suppress(TimeoutError):  # it is ending: let it say how
                await asyncio.wait_for(self.process.wait(), 5)
            await self._stop_child(self.process)
            raise RuntimeError(
                "the read models' process (strategies projections follow) did not start: "
                "see its log lines above"
            )
        self._supervisor = asyncio.create_task(self._supervise(), name="projector")

    async def _spawn(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "STRATEGIES_LOG_LEVEL": self._log_level(),
            "STRATEGIES_LOG_FORMAT": self.settings.log_format.value,
        }
        self.process = await asyncio.create_subprocess_exec(
            *strategies_command("projections", "follow", "--parent", str(os.getpid())),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,  # READY only: its logs go to stderr
        )
        log.info("projections.process_started", pid=self.process.pid)

    def _log_level(self) -> str:
        """The level this process logs at (demo and bench quieten theirs to WARNING)."""
        name = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        return name if name in LEVELS else self.settings.log_level

    async def _supervise(self) -> None:
        delay = RESTART_DELAY_S
        while True:
            assert self.process is not None
            started = time.monotonic()
            code = await self.process.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started > STABLE_S:
                delay = RESTART_DELAY_S  # it ran well: a new failure starts the back-off over
            self.restarts += 1
            log.error("projections.process_died", code=code, restart_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            delay = min(delay * 2, MAX_RESTART_DELAY_S)
            await self._spawn()

    async def stop(self) -> None:
        self._stopping.set()
        if self.process is not None:
            await self._stop_child(self.process)
        if self._supervisor is not None:
            await self._supervisor

    @staticmethod
    async def _stop_child(process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            log.error("projections.process_killed", pid=process.pid)
            process.kill()
            await process.wait()
