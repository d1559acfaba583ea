"""The Kafka settings: strict checks, one line per variable, and the one options object that
every client gets (aiokafka's keyword arguments, and faststream's security object that must
turn back into the same arguments)."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import pytest
from faststream.kafka.security import parse_security

from infra.bus.kafka_security import faststream_security
from infra.devservices.kafka import config
from infra.settings import Settings, SettingsError, load_settings
from infra.settings_kafka import KafkaConnection

VARIABLES = (
    "STRATEGIES_KAFKA_PARTITIONS",
    "STRATEGIES_KAFKA_REPLICATION_FACTOR",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "KAFKA_SSL_KEY_PASSWORD",
)
SASL = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "strategies",
    "KAFKA_SASL_PASSWORD": "hunter2-secret",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate, its key, and the key encrypted with `pw-123`."""
    folder = tmp_path_factory.mktemp("pem")
    cert, key, locked = folder / "cert.pem", folder / "key.pem", folder / "locked.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kafka.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(key),
            "-aes256",
            "-passout",
            "pass:pw-123",
            "-out",
            str(locked),
        ],
        check=True,
        capture_output=True,
    )
    return {"cert": cert, "key": key, "locked": locked}


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        load_settings()
    return str(refused.value).splitlines()[1:]


def test_by_default_topics_have_8_partitions_1_replica_and_clients_talk_plaintext() -> None:
    kafka = load_settings().kafka
    assert (kafka.partitions, kafka.replication_factor) == (8, 1)
    assert kafka.connection == KafkaConnection()
    assert kafka.connection.client_options() == {"security_protocol": "PLAINTEXT"}
    assert faststream_security(kafka.connection) is None


def test_sizing_variables_are_read_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIES_KAFKA_PARTITIONS", "24")
    monkeypatch.setenv("STRATEGIES_KAFKA_REPLICATION_FACTOR", "3")
    kafka = load_settings().kafka
    assert (kafka.partitions, kafka.replication_factor) == (24, 3)
    lines = problems(
        monkeypatch, STRATEGIES_KAFKA_PARTITIONS="0", STRATEGIES_KAFKA_REPLICATION_FACTOR="x"
    )
    assert [line.split(":")[0].strip() for line in lines] == [
        "STRATEGIES_KAFKA_PARTITIONS",
        "STRATEGIES_KAFKA_REPLICATION_FACTOR",
    ]


def test_sasl_settings_become_the_clients_options_and_the_password_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (SASL | {"KAFKA_SECURITY_PROTOCOL": "sasl_plaintext"}).items():
        monkeypatch.setenv(name, value)
    connection = load_settings().kafka.connection
    assert connection.client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "strategies",
        "sasl_plain_password": "hunter2-secret",
    }
    assert "hunter2" not in repr(connection)
    assert str(connection) == "SASL_PLAINTEXT (SCRAM-SHA-512 as strategies)"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest.mark.parametrize("protocol", ["SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faststream_consumers_get_exactly_the_options_of_our_own_clients(
    protocol: str, mechanism: str
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        **(SASL | {"KAFKA_SECURITY_PROTOCOL": protocol, "KAFKA_SASL_MECHANISM": mechanism})
        if protocol.startswith("SASL")
        else {"KAFKA_SECURITY_PROTOCOL": protocol}
    )
    connection = settings.kafka.connection
    ours = connection.client_options()
    theirs = parse_security(faststream_security(connection))
    assert {k: v for k, v in theirs.items() if k != "ssl_context"} == {
        k: v for k, v in ours.items() if k != "ssl_context"
    }
    assert isinstance(theirs["ssl_context"], ssl.SSLContext) is connection.uses_tls


def test_every_inconsistent_variable_gets_its_own_line(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = problems(
        monkeypatch, KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="strategies"
    )
    assert lines == [
        "  KAFKA_SASL_MECHANISM: required with KAFKA_SECURITY_PROTOCOL=SASL_SSL: PLAIN, "
        "SCRAM-SHA-256 or SCRAM-SHA-512",
        "  KAFKA_SASL_PASSWORD: required with KAFKA_SECURITY_PROTOCOL=SASL_SSL",
    ]


def test_settings_a_protocol_would_ignore_are_refused_not_ignored(
    monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    lines = problems(
        monkeypatch, KAFKA_SASL_PASSWORD="hunter2-secret", KAFKA_SSL_CAFILE=str(pem["cert"])
    )
    assert [line.split(":")[0].strip() for line in lines] == [
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
    ]
    assert all("and it is PLAINTEXT" in line for line in lines)
    assert not any("hunter2" in line for line in lines)


def test_values_outside_the_choices_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = problems(monkeypatch, KAFKA_SECURITY_PROTOCOL="TLS")
    assert lines[0].startswith("  KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT'")
    for name, value in SASL.items():
        monkeypatch.setenv(name, value)
    lines = problems(monkeypatch, KAFKA_SASL_MECHANISM="GSSAPI")
    assert [line.split(":")[0].strip() for line in lines] == ["KAFKA_SASL_MECHANISM"]


def test_tls_files_must_exist_be_readable_and_load(
    monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path], tmp_path: Path
) -> None:
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_bytes(pem["cert"].read_bytes())
    unreadable.chmod(0)
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    lines = problems(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="SSL",
        KAFKA_SSL_CAFILE=str(not_pem),
        KAFKA_SSL_CERTFILE=str(tmp_path / "missing.pem"),
        KAFKA_SSL_KEYFILE=str(unreadable),
    )
    assert "KAFKA_SSL_CAFILE: does not load as CA certificates" in lines[0]
    assert "KAFKA_SSL_CERTFILE: no such file" in lines[1]
    if os.geteuid() != 0:  # root reads every file
        assert "KAFKA_SSL_KEYFILE: not readable by this process" in lines[2]


def test_a_client_certificate_loads_with_its_key_and_pass_phrase(
    monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(pem["cert"]))
    monkeypatch.setenv("KAFKA_SSL_CERTFILE", str(pem["cert"]))
    monkeypatch.setenv("KAFKA_SSL_KEYFILE", str(pem["locked"]))
    # An encrypted key without its pass phrase is an error, never a prompt on the terminal.
    lines = problems(monkeypatch)
    assert [line.split(":")[0].strip() for line in lines] == ["KAFKA_SSL_CERTFILE"]
    monkeypatch.setenv("KAFKA_SSL_KEY_PASSWORD", "pw-123")
    connection = load_settings().kafka.connection
    options = connection.client_options()
    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname


def test_a_key_without_its_certificate_is_refused(
    monkeypatch: pytest.MonkeyPatch, pem: dict[str, Path]
) -> None:
    lines = problems(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_KEYFILE=str(pem["key"]))
    assert lines == ["  KAFKA_SSL_KEYFILE: set without KAFKA_SSL_CERTFILE"]


def test_the_local_broker_can_ask_for_sasl_plain_on_its_client_listener() -> None:
    ports = config.BrokerPorts(client=19092, controller=19093)
    text = config.server_properties(ports, Path("/data"), sasl_plain=("strategies", "pw-1"))
    props = dict(line.split("=", 1) for line in text.splitlines() if not line.startswith("#"))
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092"
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    assert 'user_strategies="pw-1"' in props["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    with pytest.raises(ValueError, match="letters, digits"):
        config.server_properties(ports, Path("/data"), sasl_plain=("a", 'x";'))
