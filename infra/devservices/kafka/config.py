"""What the local broker is told: server.properties, log4j2 config and the command lines.

Everything here is pure (text in, text out) so the generated settings can be unit-tested
without a JVM. The launcher decides *when* to write or run them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

POM_PATH = Path(__file__).with_name("pom.xml")
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
# Kafka 4.x brokers refuse to run on anything older.
MIN_JAVA = 17
# A 2-core test machine shares the JVM with PostgreSQL and the workers: keep it modest.
DEFAULT_HEAP = "768m"

_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


@dataclass(frozen=True)
class BrokerPorts:
    """The two loopback listeners of the combined node."""

    client: int
    controller: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.client}"


def kafka_version(pom: Path = POM_PATH) -> str:
    """The broker version pinned in the pom; it names the jar cache so versions never mix."""
    root = ET.parse(pom).getroot()
    node = root.find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not (node.text or "").strip():
        msg = f"{pom} has no <kafka.version> property"
        raise ValueError(msg)
    return (node.text or "").strip()


def server_properties(
    ports: BrokerPorts,
    log_dir: Path,
    *,
    partitions: int = 4,
    sasl_plain: tuple[str, str] | None = None,
) -> str:
    """A single KRaft node acting as broker and controller, reachable only on loopback.

    Replication factors and min ISR are 1 because there is one node; without that the
    internal topics (offsets, transactions, share state) could never be created.
    `sasl_plain` (user, password): the client listener asks for SASL/PLAIN instead, with
    that one user (tests of the clients' security settings).
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{ports.controller}",
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{ports.client},CONTROLLER://127.0.0.1:{ports.controller}"
        ),
        # Clients must only ever be told about the data listener.
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{ports.client}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        # 50 partitions (the default) cost seconds of start-up on the first consumer group.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests create consumer groups constantly; the default 3 s delay would slow every one.
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        # The default 128 MiB dedupe buffer would take a sixth of the small heap.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    }
    if sasl_plain is not None:
        settings |= _sasl_plain_listener(ports, *sasl_plain)
    lines = ["# Written by infra/devservices/kafka/launcher.py; regenerated on every start."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _sasl_plain_listener(ports: BrokerPorts, user: str, password: str) -> dict[str, str]:
    if not all(_JAAS_SAFE.fullmatch(value) for value in (user, password)):
        raise ValueError("SASL user and password must be letters, digits, '-' or '_'")
    # The broker's own login (inter-broker) is the same user; KRaft's controller stays plain.
    jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{user}" password="{password}" user_{user}="{password}";'
    )
    return {
        "listeners": (
            f"SASL_PLAINTEXT://127.0.0.1:{ports.client},CONTROLLER://127.0.0.1:{ports.controller}"
        ),
        "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{ports.client}",
        "inter.broker.listener.name": "SASL_PLAINTEXT",
        "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas,
    }


_JAAS_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def log4j2_properties(level: str, *, to_stderr: bool = False) -> str:
    """Console logging only: the launcher redirects the broker's output into one file."""
    target = "SYSTEM_ERR" if to_stderr else "SYSTEM_OUT"
    return "\n".join(
        [
            "status = warn",
            "appender.console.type = Console",
            "appender.console.name = CONSOLE",
            f"appender.console.target = {target}",
            "appender.console.layout.type = PatternLayout",
            "appender.console.layout.pattern = [%d] %p %m (%c)%n",
            f"rootLogger.level = {level}",
            "rootLogger.appenderRef.console.ref = CONSOLE",
            # Per-request and state-change chatter would drown the lines that explain a failure.
            "logger.request.name = kafka.request.logger",
            "logger.request.level = warn",
            "logger.state.name = state.change.logger",
            "logger.state.level = warn",
            "",
        ]
    )


def broker_command(
    java: str, libs: Path, properties: Path, log4j: Path, *, heap: str = DEFAULT_HEAP
) -> list[str]:
    """The long-running node. The classpath wildcard is expanded by Java, not by a shell."""
    return [
        java,
        f"-Xms{min_heap(heap)}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{libs}/*",
        BROKER_MAIN,
        str(properties),
    ]


def tool_command(java: str, libs: Path, log4j: Path, *args: str) -> list[str]:
    """A short-lived StorageTool run: tuned for start-up time rather than throughput."""
    return [
        java,
        "-Xmx256m",
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{libs}/*",
        STORAGE_TOOL,
        *args,
    ]


def format_args(cluster_id: str, properties: Path) -> list[str]:
    # --standalone makes this node the only voter of a dynamic quorum, which is what
    # controller.quorum.bootstrap.servers (rather than the static voters list) requires.
    return ["format", "-t", cluster_id, "-c", str(properties), "--standalone"]


def maven_command(mvn: str, pom: Path, output_dir: Path) -> list[str]:
    return [
        mvn,
        "-B",
        "-q",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={output_dir}",
    ]


def min_heap(heap: str) -> str:
    """Start at a third of the maximum so an idle test broker does not reserve it all."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", heap)
    if match is None:
        msg = f"heap size {heap!r} is not like '768m' or '1g'"
        raise ValueError(msg)
    amount, unit = int(match[1]), match[2].lower()
    megabytes = {"k": amount // 1024, "m": amount, "g": amount * 1024, "": amount // 2**20}[unit]
    return f"{max(64, megabytes // 3)}m"


def java_major_version(version_output: str) -> int | None:
    """Parse `java -version` output: "1.8.0_392" is 8, "17.0.15" is 17, "21" is 21."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match[1])
    if major == 1 and match[2] is not None:
        return int(match[2])
    return major
