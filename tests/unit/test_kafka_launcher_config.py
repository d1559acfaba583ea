"""The local broker's generated settings and command lines, checked without starting a JVM."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from infra.devservices.kafka import config
from infra.devservices.kafka.cli import app
from infra.devservices.kafka.launcher import LocalKafka, default_home, default_jar_cache
from infra.devservices.kafka.state import BrokerState, load_state, save_state

PORTS = config.BrokerPorts(client=19092, controller=19093)
DATA = Path("/srv/kafka/data")


def _properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_node_is_a_combined_kraft_broker_and_controller_on_loopback() -> None:
    props = _properties(config.server_properties(PORTS, DATA))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert "controller.quorum.voters" not in props  # --standalone needs the bootstrap form


def test_clients_are_only_told_about_the_plaintext_listener() -> None:
    props = _properties(config.server_properties(PORTS, DATA))
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"


def test_internal_topics_fit_a_single_node_and_groups_start_without_delay() -> None:
    props = _properties(config.server_properties(PORTS, DATA))
    single_node = [
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ]
    assert {key: props[key] for key in single_node} == dict.fromkeys(single_node, "1")
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "4"
    assert props["log.dirs"] == str(DATA)


def test_broker_command_runs_kafka_with_a_modest_heap_on_the_cached_classpath() -> None:
    command = config.broker_command(
        "/usr/bin/java", Path("/cache/libs"), Path("/home/server.properties"), Path("/l4j")
    )
    assert command[0] == "/usr/bin/java"
    assert "-Xmx768m" in command
    assert "-Dlog4j2.configurationFile=/l4j" in command
    # A literal wildcard: the JVM expands it, no shell is involved.
    assert command[command.index("-cp") + 1] == "/cache/libs/*"
    assert command[-2:] == ["kafka.Kafka", "/home/server.properties"]


def test_storage_is_formatted_standalone_with_the_generated_cluster_id() -> None:
    args = config.format_args("MkU3OEVBNTcwNTJENDM2Qg", Path("/home/server.properties"))
    command = config.tool_command("java", Path("/cache/libs"), Path("/l4j"), *args)
    tool_at = command.index("kafka.tools.StorageTool")
    assert command[tool_at + 1 :] == [
        "format",
        "-t",
        "MkU3OEVBNTcwNTJENDM2Qg",
        "-c",
        "/home/server.properties",
        "--standalone",
    ]


def test_maven_copies_the_runtime_classpath_of_the_shipped_pom() -> None:
    command = config.maven_command("mvn", config.POM_PATH, Path("/cache/kafka-x/libs"))
    assert command[:3] == ["mvn", "-B", "-q"]
    assert command[command.index("-f") + 1] == str(config.POM_PATH)
    assert "dependency:copy-dependencies" in command
    assert "-DincludeScope=runtime" in command
    assert "-DoutputDirectory=/cache/kafka-x/libs" in command


def test_kafka_version_is_read_from_the_shipped_pom() -> None:
    assert config.kafka_version().startswith("4.")


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("command not found", None),
    ],
)
def test_java_major_version_is_parsed_from_old_and_new_version_strings(
    output: str, major: int | None
) -> None:
    assert config.java_major_version(output) == major


@pytest.mark.parametrize(("heap", "initial"), [("768m", "256m"), ("1g", "341m"), ("96m", "64m")])
def test_initial_heap_is_a_third_of_the_maximum(heap: str, initial: str) -> None:
    assert config.min_heap(heap) == initial


def test_jar_cache_is_shared_per_version_and_home_follows_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STRATEGIES_DATA_DIR", str(tmp_path))
    assert default_home() == tmp_path / "kafka"
    assert default_jar_cache("4.9.9").name == "kafka-4.9.9"
    kafka = LocalKafka()
    assert kafka.home == tmp_path / "kafka"
    assert kafka.jar_cache.name == f"kafka-{config.kafka_version()}"


def test_a_corrupt_state_file_reads_as_no_state(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json", encoding="utf-8")
    assert load_state(path) is None
    state = BrokerState("4.1.1", "MkU3OEVBNTcwNTJENDM2Qg", 1, 2, pid=42)
    save_state(path, state)
    assert load_state(path) == state


def test_cli_status_exits_with_1_when_no_broker_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--home", str(tmp_path / "kafka")])
    assert result.exit_code == 1
    assert "not running" in result.output


def test_cli_help_lists_the_three_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert all(command in result.output for command in ("start", "stop", "status"))
