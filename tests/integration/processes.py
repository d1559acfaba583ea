"""The pipeline as an operator runs it: `strategies serve` and `strategies worker all` as
separate processes on real Kafka and PostgreSQL, with their logs in files."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from infra.devservices.ports import free_port
from infra.postgres.platforms import Credentials
from tests.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]


def pipeline_env(database_url: str, bootstrap: str, prefix: str) -> dict[str, str]:
    """This process's environment for a pipeline on its own database and topics (named
    `prefix-...`): a master key and an admin token of its own, chunks of three Traders,
    JSON log lines."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "STRATEGIES_TOPIC_PREFIX": f"{prefix}-{uuid.uuid4().hex[:8]}",
        "STRATEGIES_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "STRATEGIES_ADMIN_TOKEN": "admin-" + secrets.token_hex(8),
        "STRATEGIES_CHUNK_SIZE": "3",
        "STRATEGIES_LOG_FORMAT": "json",
    }


@contextlib.contextmanager
def api_and_workers(env: Mapping[str, str], logs: Path) -> Iterator[str]:
    """Both processes with `env` until the block ends (then SIGTERM, and the workers must
    drain and exit 0); yields the API's base URL once it answers /health. Their output is
    in `logs`/api.log and `logs`/workers.log."""
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=dict(env),
        stdout=(logs / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    workers = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "worker", "all"],
        cwd=ROOT,
        env=dict(env),
        stdout=(logs / "workers.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or api.poll() is not None:
                raise AssertionError((logs / "api.log").read_text()[-3000:])
            time.sleep(0.3)
        yield base
    finally:
        for process in (api, workers):
            process.terminate()
        for process in (api, workers):
            process.wait(timeout=60)
    assert workers.returncode == 0, (logs / "workers.log").read_text()[-2000:]


def ready_platform(
    base: str, env: Mapping[str, str], platform: str, codes: list[str]
) -> Credentials:
    """A platform created with the CLI, `codes` registered and 100,000 USD of float
    deposited over the admin API: ready to trade."""
    created = run_cli(env, "platform", "create", platform, "--name", platform)
    assert created.returncode == 0, created.stderr[-2000:]
    fields = dict(line.split(":", 1) for line in created.stdout.strip().splitlines())
    admin = {"Authorization": f"Bearer {env['STRATEGIES_ADMIN_TOKEN']}"}
    participants = {"participants": [{"participant_code": code} for code in codes]}
    deposit = {"currency": "USD", "amount": "100000.00", "reference": f"{platform}-FLOAT"}
    path = f"{base}/admin/platforms/{platform}"
    registered = httpx.put(f"{path}/participants", json=participants, headers=admin)
    assert registered.status_code == 200, registered.text
    funded = httpx.post(f"{path}/float-deposits", json=deposit, headers=admin)
    assert funded.status_code == 201, funded.text
    return Credentials(
        platform, fields["api key"].strip(), fields["secret"].strip(), fields["passphrase"].strip()
    )
