"""`strategies serve` as a real process: embedded PostgreSQL, /health, clean stop, restarts."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx
import pytest

from infra.bootstrap.http import create_app
from infra.devservices.embedded_postgres import EmbeddedPostgres
from infra.devservices.ports import free_port
from infra.devservices.postgres_os import pid_alive
from infra.settings import Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

    from fastapi import FastAPI

    StartServe = Callable[[], "Serve"]

pytestmark = pytest.mark.integration

STARTUP_DEADLINE_S = 60.0


class Serve:
    """One `strategies serve` process with its own data folder and log file."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {key: value for key, value in os.environ.items() if key not in _SERVICES}
        env |= {"STRATEGIES_DATA_DIR": str(data_dir), "STRATEGIES_LOG_FORMAT": "json"}
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "infra.cli", "serve", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self) -> httpx.Response:
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited early:\n{self.output()}"
            try:
                response = httpx.get(f"{self.base_url}/health", timeout=5)
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if response.status_code == 200:
                return response
            time.sleep(0.2)
        pytest.fail(f"/health not 200 within {STARTUP_DEADLINE_S}s:\n{self.output()}")

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


_SERVICES = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
MASTER_KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def serves(data_dir: Path, tmp_path: Path) -> Iterator[StartServe]:
    """Starts serve processes on one data folder; kills leftovers and the server after."""
    started: list[Serve] = []

    def start() -> Serve:
        serve = Serve(data_dir, tmp_path / f"serve-{len(started)}.log")
        started.append(serve)
        return serve

    yield start
    for serve in started:
        if serve.process.poll() is None:
            serve.kill()
    EmbeddedPostgres(data_dir / "postgres").shutdown()


def embedded_pid(data_dir: Path) -> int:
    status = EmbeddedPostgres(data_dir / "postgres").status()
    assert status is not None, "embedded PostgreSQL is not running"
    return status.pid


def wait_until_dead(pid: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive after {seconds}s"
        time.sleep(0.05)


def test_serve_answers_health_and_docs_then_stops_its_database_on_sigterm(
    serves: StartServe, data_dir: Path
) -> None:
    serve = serves()
    health = serve.wait_healthy()
    assert health.json()["status"] == "ok"
    assert health.json()["checks"]["database"]["mode"] == "embedded"
    assert health.json()["checks"]["broker"] == {
        "ok": True,
        "mode": "embedded",
        "latency_ms": None,
        "error": None,
    }

    openapi = httpx.get(f"{serve.base_url}/openapi.json", timeout=5)
    assert openapi.status_code == 200
    assert openapi.json()["info"]["title"] == "Portfolio Strategies"
    assert httpx.get(f"{serve.base_url}/docs", timeout=5).status_code == 200
    traced = httpx.get(f"{serve.base_url}/health", headers={"X-Request-ID": "trace-1"})
    assert traced.headers["X-Correlation-ID"] == "trace-1"

    postgres_pid = embedded_pid(data_dir)
    assert serve.terminate() == 0, serve.output()
    wait_until_dead(postgres_pid)
    assert EmbeddedPostgres(data_dir / "postgres").status() is None
    assert '"correlation_id":"trace-1"' in serve.output()
    assert '"event":"postgres.stopped"' in serve.output()


def test_serve_recovers_after_being_killed(serves: StartServe, data_dir: Path) -> None:
    first = serves()
    first.wait_healthy()
    orphaned_pid = embedded_pid(data_dir)
    first.kill()  # no clean-up at all: PostgreSQL is orphaned, its owner record stale

    second = serves()
    assert second.wait_healthy().json()["status"] == "ok"
    assert embedded_pid(data_dir) == orphaned_pid  # reused, not started twice
    assert '"event":"postgres.adopted"' in second.output()

    assert second.terminate() == 0, second.output()
    wait_until_dead(orphaned_pid)  # the adopting process stopped it


def test_db_status_exit_code_tells_whether_the_server_runs(data_dir: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in _SERVICES}
    env["STRATEGIES_DATA_DIR"] = str(data_dir)

    def strategies(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "infra.cli", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert strategies("db", "status").returncode == 1
    started = strategies("db", "start")
    assert started.returncode == 0, started.stderr
    try:
        assert strategies("db", "status").returncode == 0
        assert strategies("db", "url").stdout.strip() == started.stdout.strip()
        # migrated: a process given this URL as DATABASE_URL accepts it
        by_url = {**env, "DATABASE_URL": started.stdout.strip()}
        migrated = subprocess.run(
            [sys.executable, "-m", "infra.cli", "db", "migrate", "--status"],
            env=by_url,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    finally:
        assert strategies("db", "stop").returncode == 0
    assert strategies("db", "status").returncode == 1


@asynccontextmanager
async def in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan (the asyncpg pool) running, served without a socket."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        yield client


async def test_health_is_ok_in_process_against_an_external_database(
    fresh_database_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=fresh_database_url,
        kafka_bootstrap_servers=None,
        master_key=MASTER_KEY,
    )
    app = create_app(settings, fresh_database_url, run_engine=False)
    async with in_process(app) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["ok"] is True
    assert response.json()["checks"]["database"]["mode"] == "external"
    assert response.headers["X-Correlation-ID"]


async def test_health_is_503_quickly_when_database_and_broker_are_unreachable(
    tmp_path: Path,
) -> None:
    unreachable_db = f"postgresql://app:s3cret@127.0.0.1:{free_port()}/strategies"
    settings = Settings(
        data_dir=tmp_path,
        database_url=unreachable_db,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        master_key=MASTER_KEY,
    )
    async with in_process(create_app(settings, unreachable_db, run_engine=False)) as client:
        started = time.monotonic()
        response = await client.get("/health")
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["mode"] == "external"
    assert "s3cret" not in response.text
    assert elapsed < 5  # probes time out after 2 s each, concurrently


async def test_health_reaches_a_real_kafka_broker(
    fresh_database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=fresh_database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        master_key=MASTER_KEY,
    )
    app = create_app(settings, fresh_database_url, run_engine=False)
    async with in_process(app) as client:
        response = await client.get("/health")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["broker"]["ok"] is True
    assert response.json()["checks"]["broker"]["mode"] == "external"
