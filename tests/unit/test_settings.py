"""Settings come from the environment names that deployments rely on."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

from infra.settings import LogFormat, Settings, SettingsError, load_settings

VARIABLES = (
    "DATABASE_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "STRATEGIES_DATA_DIR",
    "STRATEGIES_LOG_LEVEL",
    "STRATEGIES_LOG_FORMAT",
    "STRATEGIES_HTTP_HOST",
    "STRATEGIES_HTTP_PORT",
    "STRATEGIES_DRAIN_TIMEOUT_S",
    "STRATEGIES_MAX_PARTICIPANTS",
    "STRATEGIES_MAX_ALLOCATIONS",
    "STRATEGIES_ENV_FILE",
    "STRATEGIES_MASTER_KEY",
    "STRATEGIES_MASTER_KEY_PREVIOUS",
    "STRATEGIES_TOPIC_PREFIX",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_nothing_configured_means_embedded_services_and_local_defaults() -> None:
    settings = load_settings()
    assert settings.postgres.url is None
    assert settings.postgres.embedded
    assert settings.kafka.bootstrap_servers is None
    assert settings.kafka.embedded
    assert settings.data_dir == Path(platformdirs.user_data_dir("portfolio-strategies"))
    assert settings.postgres.data_dir == settings.data_dir / "postgres"
    assert settings.log.level == "INFO"
    assert settings.log.format is LogFormat.AUTO
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 8000)
    assert settings.drain_timeout_s == 60.0
    assert (settings.limits.max_participants, settings.limits.max_allocations) == (10_000, 20)


def test_every_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db:5432/strategies")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092, kafka-2:9092")
    monkeypatch.setenv("STRATEGIES_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STRATEGIES_LOG_LEVEL", "debug")
    monkeypatch.setenv("STRATEGIES_LOG_FORMAT", "JSON")
    monkeypatch.setenv("STRATEGIES_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("STRATEGIES_HTTP_PORT", "9000")
    monkeypatch.setenv("STRATEGIES_MAX_PARTICIPANTS", "250")
    monkeypatch.setenv("STRATEGIES_MAX_ALLOCATIONS", "5")

    settings = load_settings()

    assert settings.postgres.url is not None
    assert settings.postgres.url.get_secret_value() == "postgresql://app:s3cret@db:5432/strategies"
    assert not settings.postgres.embedded
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.data_dir == tmp_path
    assert settings.log.level == "DEBUG"
    assert settings.log.format is LogFormat.JSON
    assert (settings.http.host, settings.http.port) == ("0.0.0.0", 9000)
    assert (settings.limits.max_participants, settings.limits.max_allocations) == (250, 5)


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    settings = load_settings()
    assert settings.postgres.embedded
    assert settings.kafka.embedded


def test_relative_data_dir_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATEGIES_DATA_DIR", "state")
    assert load_settings().data_dir == tmp_path.resolve() / "state"


def test_password_never_appears_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db/strategies")
    settings = load_settings()
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("STRATEGIES_LOG_LEVEL", "LOUD", "'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'"),
        ("STRATEGIES_LOG_FORMAT", "xml", "'auto', 'json' or 'console'"),
        ("STRATEGIES_HTTP_PORT", "eighty", "valid integer"),
        ("STRATEGIES_HTTP_PORT", "70000", "less than or equal to 65535"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "host:port"),
        ("DATABASE_URL", "mysql://app@db/strategies", "postgresql://"),
        ("STRATEGIES_DRAIN_TIMEOUT_S", "0", "greater than 0"),
        ("STRATEGIES_MAX_PARTICIPANTS", "0", "greater than or equal to 1"),
        ("STRATEGIES_MAX_PARTICIPANTS", "-5", "greater than or equal to 1"),
        ("STRATEGIES_MAX_PARTICIPANTS", "many", "valid integer"),
        ("STRATEGIES_MAX_ALLOCATIONS", "0", "greater than or equal to 1"),
        ("STRATEGIES_MAX_ALLOCATIONS", "2.5", "valid integer"),
    ],
)
def test_bad_value_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    message = str(raised.value)
    assert f"{name}: " in message
    assert expected in message


def test_log_level_error_shows_the_rejected_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIES_LOG_LEVEL", "LOUD")
    with pytest.raises(SettingsError, match=r"STRATEGIES_LOG_LEVEL: .* \(got 'LOUD'\)"):
        load_settings()


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATEGIES_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("STRATEGIES_HTTP_PORT", "eighty")
    monkeypatch.setenv("STRATEGIES_MAX_PARTICIPANTS", "0")
    monkeypatch.setenv("STRATEGIES_MAX_ALLOCATIONS", "none")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    lines = str(raised.value).splitlines()[1:]
    named = sorted(line.split(":")[0].strip() for line in lines)
    assert named == [
        "STRATEGIES_HTTP_PORT",
        "STRATEGIES_LOG_LEVEL",
        "STRATEGIES_MAX_ALLOCATIONS",
        "STRATEGIES_MAX_PARTICIPANTS",
    ]


def test_rejected_database_url_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://app:s3cret@db/strategies")
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert "s3cret" not in str(raised.value)


def test_settings_can_be_built_in_code_by_field_name(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_level="warning", http_port=8123)
    assert settings.log.level == "WARNING"
    assert settings.http.port == 8123


def test_a_copied_settings_object_derives_its_sections_from_its_own_values() -> None:
    settings = Settings(log_level="INFO")
    assert settings.log.level == "INFO"
    quieter = settings.model_copy(update={"log_level": "WARNING"})
    assert quieter.log.level == "WARNING"


def test_the_http_edge_variables_are_read_into_the_http_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATEGIES_TRUSTED_HOSTS", "API.example.com, *.example.org")
    monkeypatch.setenv("STRATEGIES_FORWARDED_ALLOW_IPS", "10.0.0.7,10.0.0.8")
    monkeypatch.setenv("STRATEGIES_HTTP_HEADER_TIMEOUT_S", "2.5")
    monkeypatch.setenv("STRATEGIES_HTTP_KEEPALIVE_TIMEOUT_S", "3")
    monkeypatch.setenv("STRATEGIES_HTTP_MAX_CONNECTIONS", "64")
    monkeypatch.setenv("STRATEGIES_MAX_RESPONSE_BYTES", "1048576")

    settings = load_settings()

    assert settings.http.trusted_hosts == ("api.example.com", "*.example.org")
    assert settings.http.forwarded_allow_ips == ("10.0.0.7", "10.0.0.8")
    assert (settings.http.header_timeout_s, settings.http.keepalive_timeout_s) == (2.5, 3)
    assert settings.http.max_connections == 64
    assert settings.max_response_bytes == 1048576


def test_by_default_any_host_is_answered_and_no_proxy_is_believed() -> None:
    http = Settings().http
    assert (http.trusted_hosts, http.forwarded_allow_ips) == (("*",), ())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STRATEGIES_TRUSTED_HOSTS", "api.example.com/evil"),
        ("STRATEGIES_TRUSTED_HOSTS", "a b"),
        ("STRATEGIES_MAX_RESPONSE_BYTES", "1024"),
        ("STRATEGIES_HTTP_HEADER_TIMEOUT_S", "0"),
    ],
)
def test_bad_http_edge_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings()


def test_private_webhook_targets_are_off_unless_the_setting_says_exactly_true(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().webhook_allow_private is False
    for value, expected in (("true", True), ("false", False)):
        monkeypatch.setenv("STRATEGIES_WEBHOOK_ALLOW_PRIVATE", value)
        assert load_settings().webhook_allow_private is expected
    for loose in ("1", "yes", "on", "True", "t", " true", "0", "no"):
        monkeypatch.setenv("STRATEGIES_WEBHOOK_ALLOW_PRIVATE", loose)
        with pytest.raises(SettingsError, match="STRATEGIES_WEBHOOK_ALLOW_PRIVATE"):
            load_settings()


# The .env file ------------------------------------------------------------------------------


def test_a_dotenv_file_in_the_working_directory_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "# the deployment's\nSTRATEGIES_HTTP_PORT=9100\nSTRATEGIES_TOPIC_PREFIX=from-file\n"
        "UNRELATED=ignored\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATEGIES_TOPIC_PREFIX", "from-env")

    settings = load_settings()

    assert settings.http.port == 9100
    assert settings.topic_prefix == "from-env"
    # children started elsewhere (the read models' process) read the same file
    assert os.environ["STRATEGIES_ENV_FILE"] == str(tmp_path / ".env")


def test_strategies_env_file_names_another_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "prod.env").write_text("STRATEGIES_HTTP_PORT=9200\nSTRATEGIES_LOG_LEVEL=loud\n")
    (tmp_path / ".env").write_text("STRATEGIES_HTTP_PORT=9100\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATEGIES_ENV_FILE", str(tmp_path / "prod.env"))
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert str(refused.value).splitlines()[1:] == [
        "  STRATEGIES_LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or "
        "'CRITICAL' (got 'LOUD')"
    ]
    monkeypatch.setenv("STRATEGIES_LOG_LEVEL", "debug")
    assert load_settings().http.port == 9200

    monkeypatch.setenv("STRATEGIES_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(SettingsError, match="STRATEGIES_ENV_FILE: no such file"):
        load_settings()


def test_a_malformed_master_key_is_a_bad_variable_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATEGIES_MASTER_KEY", "c2hvcnQ=")
    monkeypatch.setenv("STRATEGIES_MASTER_KEY_PREVIOUS", "not base64!")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    lines = str(refused.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "STRATEGIES_MASTER_KEY",
        "STRATEGIES_MASTER_KEY_PREVIOUS",
    ]
    assert "c2hvcnQ" not in str(refused.value) and "not base64" not in str(refused.value)
    assert all("strategies master-key generate" in line for line in lines)
