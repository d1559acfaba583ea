"""Urgent domain calls (locking prices, placing blocks, the relay) never queue behind the
bulk chunk work: with ten big Operations at once, a shared thread pool made locked quotes
expire before their blocks were placed."""

from __future__ import annotations

import asyncio
import threading

from infra.bootstrap.engine import CHUNK_THREADS, Engine
from infra.bus.memory import InProcessBus
from infra.settings import Settings


async def test_an_urgent_call_runs_while_every_chunk_thread_is_busy() -> None:
    engine = Engine(Settings(), "postgresql://unused/none", ["all"], bus=InProcessBus())
    release = threading.Event()
    busy = [
        asyncio.ensure_future(engine.call_chunk(release.wait, 30))
        for _ in range(CHUNK_THREADS * 5)  # a deep queue of chunk work
    ]
    try:
        assert await asyncio.wait_for(engine.call(lambda: 42), timeout=5) == 42
        assert not any(task.done() for task in busy)
    finally:
        release.set()
        await asyncio.gather(*busy)
        engine._chunk_threads.shutdown(wait=True)


async def test_a_call_keeps_the_log_context_of_its_caller() -> None:
    import structlog

    engine = Engine(Settings(), "postgresql://unused/none", ["all"], bus=InProcessBus())
    structlog.contextvars.bind_contextvars(correlation_id="abc")
    try:
        seen = await engine.call_chunk(structlog.contextvars.get_contextvars)
        assert seen["correlation_id"] == "abc"
    finally:
        structlog.contextvars.unbind_contextvars("correlation_id")
        engine._chunk_threads.shutdown(wait=True)
