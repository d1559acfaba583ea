"""KafkaBus instances for tests on the real broker: unique names, waiting, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import uuid4

import pytest

from infra.bus.kafka import KafkaBus

WAIT = 60.0  # generous: a group's first join and a rebalance take seconds, not milliseconds


def unique(name: str) -> str:
    # Topics and groups are never reused, so a shared or long-lived broker leaks no state.
    return f"{name}-{uuid4().hex[:12]}"


async def until(condition: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def bus_factory(bootstrap: str, **defaults: Any) -> AsyncIterator[Callable[..., KafkaBus]]:
    """`make(**options)` builds a bus with `defaults` overridden by `options`; every bus made
    is stopped on exit."""
    buses: list[KafkaBus] = []

    def make(**options: Any) -> KafkaBus:
        bus = KafkaBus(bootstrap, client_id=unique("test-bus"), **(defaults | options))
        buses.append(bus)
        return bus

    try:
        yield make
    finally:
        await asyncio.wait_for(asyncio.gather(*(bus.stop() for bus in buses)), WAIT)
