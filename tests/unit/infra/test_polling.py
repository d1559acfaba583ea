"""The tailing loop of the relay and the log follower: at once while there is work, a pause
when idle, a growing pause while failing, and an end when stopped."""

from __future__ import annotations

import asyncio

from infra.polling import poll_until


async def test_it_polls_at_once_while_there_is_work_and_runs_idle_when_there_is_none() -> None:
    stop = asyncio.Event()
    found = [3, 2, 0, 1, 0]
    steps: list[str] = []

    async def step() -> int:
        n = found.pop(0)
        steps.append(f"step {n}")
        if not found:
            stop.set()
        return n

    async def idle() -> None:
        steps.append("idle")

    await asyncio.wait_for(
        poll_until(stop, step, idle_delay=0.001, failed=lambda: None, idle=idle), 5
    )
    assert steps == ["step 3", "step 2", "step 0", "idle", "step 1", "step 0", "idle"]


async def test_a_failing_step_or_idle_is_reported_and_tried_again_after_a_growing_pause() -> None:
    stop = asyncio.Event()
    failures: list[str] = []
    calls = 0

    async def step() -> int:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionError("store unreachable")
        if calls == 4:
            stop.set()
        return 0

    async def idle() -> None:
        if calls == 3:
            raise ConnectionError("position not saved")

    def failed() -> None:
        failures.append("reported")

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(
        poll_until(stop, step, idle_delay=0.001, failed=failed, idle=idle, max_backoff=0.2), 5
    )
    assert calls == 4
    assert failures == ["reported"] * 3  # twice the step, once the idle hook
    assert loop.time() - started >= 0.1 + 0.2 + 0.2  # 0.1, then doubled up to the cap


async def test_it_ends_when_stopped_while_it_waits() -> None:
    stop = asyncio.Event()

    async def step() -> int:
        return 0

    asyncio.get_running_loop().call_later(0.05, stop.set)
    await asyncio.wait_for(poll_until(stop, step, idle_delay=60, failed=lambda: None), 5)
