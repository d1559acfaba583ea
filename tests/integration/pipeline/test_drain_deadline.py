"""A worker's drain on SIGTERM is bounded: with the broker frozen, the worker still leaves
after STRATEGIES_DRAIN_TIMEOUT_S, or at once on a second signal, with exit code 1."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.devservices.kafka.launcher import LocalKafka

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def frozen_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    kafka = LocalKafka(home=tmp_path_factory.mktemp("kafka"))
    bootstrap = kafka.start()
    pid = kafka.status().pid
    assert pid is not None
    try:
        yield bootstrap, pid
    finally:
        os.kill(pid, signal.SIGCONT)
        kafka.stop()


def _worker(database_url: str, bootstrap: str, log: Path, drain_s: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        # `worker all` sends webhooks, which needs the key (the same in every process)
        "STRATEGIES_MASTER_KEY": MASTER_KEY,
        "STRATEGIES_TOPIC_PREFIX": f"drain-{log.stem}",
        "STRATEGIES_LOG_FORMAT": "json",
        "STRATEGIES_DRAIN_TIMEOUT_S": drain_s,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "worker", "all"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while '"engine.started"' not in log.read_text():
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    return worker


@pytest.mark.parametrize(
    ("drain_s", "second_signal", "reason"),
    [("3", False, "timeout"), ("600", True, "second signal")],
)
def test_a_drain_stuck_on_a_frozen_broker_is_abandoned(
    fresh_database_url: str,
    frozen_broker: tuple[str, int],
    tmp_path: Path,
    drain_s: str,
    second_signal: bool,
    reason: str,
) -> None:
    bootstrap, broker = frozen_broker
    log = tmp_path / f"{reason.replace(' ', '-')}.log"
    worker = _worker(fresh_database_url, bootstrap, log, drain_s)
    os.kill(broker, signal.SIGSTOP)
    try:
        began = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        if second_signal:
            time.sleep(1.0)
            assert worker.poll() is None, log.read_text()[-3000:]  # still draining
            worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        took = time.monotonic() - began
    finally:
        os.kill(broker, signal.SIGCONT)
        if worker.poll() is None:
            worker.kill()
    text = log.read_text()
    assert code == 1, text[-3000:]
    assert '"worker.drain_abandoned"' in text and f'"reason":"{reason}"' in text, text[-3000:]
    assert took < (3 if second_signal else float(drain_s) + 3)
