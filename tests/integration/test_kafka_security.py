"""The Kafka settings reach the real clients: topic sizing on the shared broker, and SASL on a
broker of this module's own whose only client listener asks for SASL/PLAIN.

The SASL broker costs one more JVM start (a few seconds), so every SASL case shares it. A
client that is refused must fail in seconds with one line that says why, never hang.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]

from api.routes.health import PROBE_TIMEOUT_S, _probe_broker
from infra.bootstrap.engine import build_bus
from infra.bus import Delivery, Record
from infra.bus.kafka_reach import BrokerRefusedError
from infra.bus.topics import TopicSetupError, ensure_topics
from infra.devservices.kafka.launcher import LocalKafka
from infra.settings import KafkaSection, Settings
from infra.settings_kafka import KafkaConnection
from tests.integration.kafka_buses import WAIT, unique
from tests.log_capture import json_log_lines

pytestmark = pytest.mark.integration

USER, PASSWORD = "strategies", "s3cret-for-tests"


def sasl_settings(bootstrap: str, **overrides: str) -> Settings:
    """Settings as a deployment's environment would give them (the variables' own names)."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "STRATEGIES_KAFKA_PARTITIONS": "3",
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": PASSWORD,
    }
    return Settings(**(env | overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    kafka = LocalKafka(home=tmp_path_factory.mktemp("kafka-sasl"), sasl_plain=(USER, PASSWORD))
    bootstrap = kafka.start()
    try:
        yield bootstrap
    finally:
        kafka.stop()


async def partition_counts(bootstrap: str, topics: list[str], connection: KafkaConnection) -> Any:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **connection.client_options())
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def broker_check(bootstrap: str, connection: KafkaConnection) -> Any:
    """`/health`'s broker check, and how long it took."""
    began = time.monotonic()
    check = await _probe_broker(KafkaSection(bootstrap, connection=connection))
    return check, time.monotonic() - began


@pytest.fixture
async def sasl_bus_settings(sasl_broker: str) -> AsyncIterator[Settings]:
    yield sasl_settings(sasl_broker)


async def test_the_settings_connection_reaches_producer_consumer_and_admin_on_a_sasl_broker(
    sasl_bus_settings: Settings,
) -> None:
    settings = sasl_bus_settings
    topic = unique("sasl.things")
    bus = build_bus(settings, unique("sasl-test"))
    seen: asyncio.Queue[Delivery] = asyncio.Queue()

    async def handle(delivery: Delivery) -> None:
        await seen.put(delivery)

    bus.subscribe(topic, unique("sasl-group"), handle)  # a faststream consumer
    await bus.start()  # the admin client creates the topic
    try:
        await bus.publish(Record(topic, b"hello", key="k"))  # our producer
        assert (await asyncio.wait_for(seen.get(), WAIT)).value == b"hello"
    finally:
        await bus.stop()
    bootstrap = settings.kafka.bootstrap_servers
    assert bootstrap is not None
    assert await partition_counts(bootstrap, [topic], settings.kafka.connection) == {topic: 3}
    check, _ = await broker_check(bootstrap, settings.kafka.connection)
    assert check.ok, check


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"KAFKA_SASL_PASSWORD": "wrong"}, "Authentication failed"),
        ({"KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "Error"),
    ],
    ids=["wrong-password", "plaintext-client"],
)
async def test_a_refused_client_fails_the_broker_check_at_once_in_one_line(
    sasl_broker: str, overrides: dict[str, str], expected: str
) -> None:
    if overrides.get("KAFKA_SECURITY_PROTOCOL") == "PLAINTEXT":
        connection = KafkaConnection()
    else:
        connection = sasl_settings(sasl_broker, **overrides).kafka.connection
    check, took = await broker_check(sasl_broker, connection)
    assert not check.ok
    assert took < PROBE_TIMEOUT_S + 1
    assert check.error is not None
    assert expected in check.error
    assert "\n" not in check.error
    assert PASSWORD not in check.error


async def test_a_worker_with_a_wrong_password_fails_its_start_at_once_naming_the_reason(
    sasl_broker: str,
) -> None:
    bus = build_bus(sasl_settings(sasl_broker, KAFKA_SASL_PASSWORD="wrong"), "refused")
    bus.subscribe(unique("sasl.refused"), unique("refused"), lambda _: asyncio.sleep(0))
    began = time.monotonic()
    with pytest.raises(BrokerRefusedError) as refused:
        await bus.start()  # its connect timeout is 60 s: only a transient error retries
    assert time.monotonic() - began < 15
    assert "SaslAuthenticationFailed" in str(refused.value)
    assert "\n" not in str(refused.value)


async def test_a_sasl_client_on_a_plaintext_broker_fails_the_broker_check_in_one_line(
    kafka_bootstrap: str,
) -> None:
    connection = sasl_settings(kafka_bootstrap).kafka.connection
    check, took = await broker_check(kafka_bootstrap.split(",")[0], connection)
    assert not check.ok
    assert took < PROBE_TIMEOUT_S + 1
    assert check.error is not None
    assert "\n" not in check.error
    assert PASSWORD not in check.error


async def test_topics_get_the_partitions_set_and_fewer_existing_ones_are_reported(
    kafka_bootstrap: str,
) -> None:
    plain = KafkaConnection()
    topic = unique("sized")
    assert await ensure_topics(kafka_bootstrap, [topic], partitions=3, connection=plain) == {
        topic: 3
    }
    with json_log_lines() as logged:
        counts = await ensure_topics(kafka_bootstrap, [topic], partitions=5, connection=plain)
    assert counts == {topic: 3}  # never more partitions behind the keys' backs
    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    assert any(
        line["event"] == "bus.topic_has_fewer_partitions"
        and line["topic"] == topic
        and (line["has"], line["wanted"]) == (3, 5)
        for line in lines
    ), lines


async def test_a_replication_factor_the_cluster_cannot_give_fails_in_one_line(
    kafka_bootstrap: str,
) -> None:
    if "," in kafka_bootstrap:
        pytest.fail("this check assumes a one-broker cluster (the local test broker)")
    with pytest.raises(TopicSetupError) as refused:
        await ensure_topics(
            kafka_bootstrap, [unique("replicated")], partitions=1, replication_factor=2
        )
    assert "InvalidReplicationFactor" in str(refused.value)
    assert "\n" not in str(refused.value)
