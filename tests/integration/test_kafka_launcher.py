"""The local Kafka launcher against a real JVM broker, each test in its own temporary home."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

from infra.devservices.kafka.launcher import KafkaLauncherError, LocalKafka
from infra.devservices.kafka.tools import ensure_jars, find_java

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def _accepts_connections(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def _wait_until_not_running(kafka: LocalKafka, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while kafka.status().running:
        assert time.monotonic() < deadline, "the killed broker still shows as running"
        time.sleep(0.1)


def test_start_is_idempotent_and_stop_ends_the_broker(tmp_path: Path) -> None:
    kafka = LocalKafka(home=tmp_path / "kafka")
    try:
        bootstrap = kafka.start()
        assert bootstrap.startswith("127.0.0.1:")
        assert _accepts_connections(bootstrap)
        status = kafka.status()
        assert status.running
        assert status.bootstrap == bootstrap
        assert status.log_path.is_file()
        # A second launcher on the same home (another test run, the CLI) finds the same broker.
        assert LocalKafka(home=tmp_path / "kafka").start() == bootstrap
        assert kafka.start() == bootstrap
        assert kafka.status().pid == status.pid
    finally:
        stopped = kafka.stop()
    assert stopped
    assert not kafka.status().running
    assert kafka.status().bootstrap is None
    assert not _accepts_connections(bootstrap)
    assert kafka.stop() is False


def test_a_stale_state_file_does_not_prevent_the_next_start(tmp_path: Path) -> None:
    home = tmp_path / "kafka"
    crashed = LocalKafka(home=home)
    crashed.start()
    pid = crashed.status().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # the state file still names the dead broker
    _wait_until_not_running(crashed)
    # ...and the pid now belongs to an unrelated program, which must be left alone.
    with subprocess.Popen(["sleep", "120"]) as unrelated:
        record = json.loads(crashed.state_path.read_text(encoding="utf-8"))
        record["pid"] = unrelated.pid
        crashed.state_path.write_text(json.dumps(record), encoding="utf-8")
        relaunched = LocalKafka(home=home)
        try:
            bootstrap = relaunched.start()
            assert _accepts_connections(bootstrap)
            assert relaunched.status().pid not in (pid, unrelated.pid)
            assert unrelated.poll() is None
        finally:
            relaunched.stop()
            unrelated.kill()


def test_taken_ports_lead_to_a_fresh_node_on_new_ports(tmp_path: Path) -> None:
    kafka = LocalKafka(home=tmp_path / "kafka")
    first = kafka.start()
    kafka.stop()
    host, _, port = first.rpartition(":")
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT leftovers
        squatter.bind((host, int(port)))
        squatter.listen()
        try:
            second = kafka.start()
            assert second != first
            assert _accepts_connections(second)
        finally:
            kafka.stop()


def test_a_damaged_data_dir_is_wiped_and_formatted_again(tmp_path: Path) -> None:
    kafka = LocalKafka(home=tmp_path / "kafka")
    kafka.start()
    kafka.stop()
    meta = kafka.data_dir / "meta.properties"
    meta.write_text(meta.read_text().replace("node.id=1", "node.id=7"), encoding="utf-8")
    try:
        assert _accepts_connections(kafka.start())
        assert "node.id=1" in meta.read_text(encoding="utf-8")
    finally:
        kafka.stop()


def test_missing_java_is_reported_promptly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    started = time.monotonic()
    with pytest.raises(KafkaLauncherError, match="install"):
        LocalKafka(home=tmp_path / "kafka", jar_cache=tmp_path / "jars").start()
    assert time.monotonic() - started < 5
    assert not (tmp_path / "jars").exists()


def test_missing_maven_is_reported_when_jars_must_be_downloaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java_only = tmp_path / "bin"
    java_only.mkdir()
    (java_only / "java").symlink_to(find_java())
    monkeypatch.setenv("PATH", str(java_only))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(KafkaLauncherError, match="mvn"):
        LocalKafka(home=tmp_path / "kafka", jar_cache=tmp_path / "jars").start(timeout=10)


def test_a_failing_maven_run_reports_its_output_and_leaves_no_marker(tmp_path: Path) -> None:
    broken_pom = tmp_path / "pom.xml"
    broken_pom.write_text("<project><modelVersion>4.0.0</modelVersion></project>")
    with pytest.raises(KafkaLauncherError, match=r"Maven failed[\s\S]*ERROR"):
        ensure_jars(tmp_path / "jars", pom=broken_pom, timeout=120)
    assert not (tmp_path / "jars" / ".complete").exists()
