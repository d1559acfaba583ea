"""compose.yaml must stay a valid deployment of the architecture (no Docker engine here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "api",
    "relay",
    "credit-check",
    "pricing",
    "execution",
    "projections",
    "webhooks",
    "scheduler",
}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_kafka_in_kraft_mode_and_postgres_with_health_checks() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("kafka", "postgres", "api"):
        assert "healthcheck" in services[name], name


def test_every_engine_service_runs_our_image_against_kafka_and_postgres() -> None:
    services = compose()["services"]
    assert set(services) >= SERVICES
    for name in SERVICES:
        service = services[name]
        assert service["build"] == ".", name
        assert service["command"][0] == "strategies", name
        environment = service["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql://"), name
        assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert set(service["depends_on"]) == {"kafka", "postgres", "migrate"}, name
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["command"] == ["strategies", "db", "migrate"]
    assert set(services["migrate"]["depends_on"]) == {"postgres"}


def test_the_dockerfile_installs_the_locked_dependencies() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "uv sync --frozen --no-dev" in dockerfile
    for folder in ("domain", "projections", "workers", "api", "infra"):
        assert f"COPY {folder} " in dockerfile
