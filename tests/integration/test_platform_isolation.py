"""One platform hammering with wrong passphrases does not slow another (issue 15, item 5).

A real `strategies serve` process (default settings, the whole pipeline in-process, a real
PostgreSQL) on a free port. Platform A creates Strategies one after another, as a platform
does, first with the server quiet, then while platform B hammers it: 8 concurrent clients,
each sending a signed request with a wrong passphrase every 0.1 s (up to 80/s, the issue saw
~22/s do the damage), half of them resending one wrong passphrase, half guessing a new one
each time (what the memory of failures cannot catch, only the failure budget).
The clients pause between requests rather than flood: once refused, B's requests are cheap,
and an unpaced flood of cheap requests measures the event loop's raw throughput, which
connection caps and the reverse proxy bound, not the application's budgets.

Before the fix each wrong passphrase ran a scrypt (~40 ms of CPU) in the thread pool the
routes share: A's create queued behind B's checks and its median went from 9 ms to 1.3 s.

The promise is isolation, not speed: A's median under attack stays within twice its quiet
median. The machine has 2 cores shared with other jobs and the test process itself runs B's
clients, so a quiet median of a few ms could double from noise alone; the bound is therefore
max(2 x quiet, quiet + 50 ms). 50 ms is about one scrypt: what A may pay if B's one running
check shares a core with it, and well under the hundreds of ms that B's queued checks cost A
without the fix. 40 samples each way make the median robust to a few slow outliers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from infra.devservices.ports import free_port
from infra.postgres.platforms import create_platform
from infra.postgres.secrets_box import SecretBox
from tests.e2e.client import SignedClient

pytestmark = pytest.mark.integration

MASTER_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
SAMPLES = 100
HAMMERS, HAMMER_PAUSE_S = 8, 0.1
FLOOR_S = 0.050
STARTUP_DEADLINE_S = 60.0


@contextlib.contextmanager
def serving(database_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("STRATEGIES_") and k != "STRATEGIES_ENV_FILE")
    }
    env |= {
        "DATABASE_URL": database_url,
        "STRATEGIES_MASTER_KEY": MASTER_KEY,
        "STRATEGIES_DATA_DIR": str(tmp_path / "data"),
        "STRATEGIES_LOG_FORMAT": "json",
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(process, base_url, log_path)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{log_path.read_text()}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/health", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"/health not 200 within {STARTUP_DEADLINE_S}s:\n{log_path.read_text()}")


@contextlib.asynccontextmanager
async def platforms(
    database_url: str, http: httpx.AsyncClient
) -> AsyncIterator[tuple[SignedClient, SignedClient]]:
    box = SecretBox(base64.b64decode(MASTER_KEY))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        a = await create_platform(pool, "ISOA", "Quiet platform", box)
        b = await create_platform(pool, "ISOB", "Hammering platform", box)
    finally:
        await pool.close()
    yield SignedClient(http, a), SignedClient(http, b)


async def create_latencies(client: SignedClient) -> list[float]:
    latencies = []
    for _ in range(SAMPLES):
        # A body of its own each time: identical mutations would need later and later
        # timestamps (one signature, one request id) and soon be stale.
        body = {"quoted_currency": "USD", "metadata": {"sample": secrets.token_hex(8)}}
        started = time.perf_counter()
        created = await client.post("/strategies", body)
        latencies.append(time.perf_counter() - started)
        assert created.status_code == 201, created.text
    return latencies


async def hammer(b: SignedClient, worker: int, stop: asyncio.Event, seen: Counter[int]) -> None:
    attempt = 0
    while not stop.is_set():
        attempt += 1
        guess = f"guess-{worker}-{attempt}" if worker % 2 else "always-the-same-wrong-one"
        wrong = SignedClient(b.http, dataclasses.replace(b.credentials, passphrase=guess))
        answer = await wrong.get("/strategies")
        seen[answer.status_code] += 1
        await asyncio.sleep(HAMMER_PAUSE_S)


async def test_a_platform_hammering_with_wrong_passphrases_does_not_slow_another(
    fresh_database_url: str, tmp_path: Path
) -> None:
    with serving(fresh_database_url, tmp_path) as base_url:
        limits = httpx.Limits(max_connections=HAMMERS + 2)
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as http,
            platforms(fresh_database_url, http) as (a, b),
        ):
            await create_latencies(a)  # warm-up: connections, caches, A's passphrase check
            quiet = statistics.median(await create_latencies(a))
            stop, seen = asyncio.Event(), Counter[int]()
            hammers = [asyncio.create_task(hammer(b, n, stop, seen)) for n in range(HAMMERS)]
            try:
                attacked = statistics.median(await create_latencies(a))
            finally:
                stop.set()
                await asyncio.gather(*hammers)
    bound = max(2 * quiet, quiet + FLOOR_S)
    report = (
        f"A's median create: quiet {quiet * 1000:.1f} ms, under attack {attacked * 1000:.1f} ms"
    )
    print(f"\n{report}; B's answers: {dict(seen)}")
    # B went past its failure budget (the 429s) and kept sending: it did hammer.
    assert seen[429] > 0 and sum(seen.values()) >= 5 * HAMMERS, seen
    assert set(seen) <= {401, 429}, seen
    assert attacked <= bound, f"{report} (bound {bound * 1000:.1f} ms); B: {dict(seen)}"
