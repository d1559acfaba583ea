"""The one configuration object, read from the environment once at start-up.

The environment variable names are the contract with deployments (compose.yaml, CI):
`DATABASE_URL`, `KAFKA_BOOTSTRAP_SERVERS` and `STRATEGIES_*`. Leaving the first two unset is
what selects embedded mode (PostgreSQL from the data folder, in-process bus), so "unset" and
"empty" mean the same thing here.

The variables are validated as one flat model so that every bad value is reported at once,
under its environment name; code reads them through the `postgres`, `kafka`, `log`, `http`
and `venue` sections. A `.env` file (`KEY=value` lines) in the working directory, or the one
`STRATEGIES_ENV_FILE` names, is read too; a variable of the real environment wins over it.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal, cast
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from domain.requests import Limits
from infra.settings_kafka import KAFKA_SECRET_VARIABLES, KafkaConnection, KafkaSettings
from infra.settings_limits import AbuseLimitSettings
from infra.settings_venue import VenueSettings

APP_NAME = "portfolio-strategies"
MASTER_KEY_BYTES = 32

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Values never echoed back in an error message: they may carry a password.
_SECRET_VARIABLES = (
    frozenset(
        {
            "DATABASE_URL",
            "STRATEGIES_MASTER_KEY",
            "STRATEGIES_MASTER_KEY_PREVIOUS",
            "STRATEGIES_ADMIN_TOKEN",
        }
    )
    | KAFKA_SECRET_VARIABLES
)

#: Read when present, from the working directory unless STRATEGIES_ENV_FILE names another;
#: variables of the real environment win over it.
ENV_FILE = ".env"
ENV_FILE_VARIABLE = "STRATEGIES_ENV_FILE"


class SettingsError(ValueError):
    """Raised when the environment holds a value the program cannot run with."""


class LogFormat(StrEnum):
    """`auto` picks console output for a terminal and JSON lines for everything else."""

    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


@dataclass(frozen=True)
class PostgresSection:
    # SecretStr so that a repr or a settings dump never shows the password.
    url: SecretStr | None
    data_dir: Path

    @property
    def embedded(self) -> bool:
        return self.url is None


@dataclass(frozen=True)
class KafkaSection:
    bootstrap_servers: str | None
    #: Topic sizing and the security options of every client (`infra.settings_kafka`).
    partitions: int = 8
    replication_factor: int = 1
    connection: KafkaConnection = field(default_factory=KafkaConnection)

    @property
    def embedded(self) -> bool:
        return self.bootstrap_servers is None


@dataclass(frozen=True)
class LogSection:
    level: LogLevel
    format: LogFormat


@dataclass(frozen=True)
class HttpSection:
    host: str
    port: int
    #: Host header patterns believed (`*`, `api.example.com`, `*.example.com`).
    trusted_hosts: tuple[str, ...] = ("*",)
    #: Proxies whose X-Forwarded-For/-Proto are believed (uvicorn's forwarded_allow_ips).
    forwarded_allow_ips: tuple[str, ...] = ()
    header_timeout_s: float = 10.0
    keepalive_timeout_s: int = 5
    max_connections: int = 1000


class Settings(AbuseLimitSettings, KafkaSettings, VenueSettings, BaseSettings):
    """Built once by the entry point and passed down; nothing else reads `os.environ`."""

    # Empty values count as unset so `DATABASE_URL=` in a shell or .env means embedded mode.
    # populate_by_name lets tests write Settings(database_url=...) as well as the env names.
    model_config = SettingsConfigDict(
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,
    )

    database_url: SecretStr | None = Field(default=None, validation_alias="DATABASE_URL")
    kafka_bootstrap_servers: str | None = Field(
        default=None, validation_alias="KAFKA_BOOTSTRAP_SERVERS"
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)),
        validation_alias="STRATEGIES_DATA_DIR",
    )
    log_level: LogLevel = Field(default="INFO", validation_alias="STRATEGIES_LOG_LEVEL")
    log_format: LogFormat = Field(default=LogFormat.AUTO, validation_alias="STRATEGIES_LOG_FORMAT")
    http_host: str = Field(default="127.0.0.1", validation_alias="STRATEGIES_HTTP_HOST")
    http_port: int = Field(default=8000, ge=1, le=65535, validation_alias="STRATEGIES_HTTP_PORT")
    topic_prefix: str = Field(
        default="strategies",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        validation_alias="STRATEGIES_TOPIC_PREFIX",
    )
    chunk_size: int = Field(default=500, ge=1, le=10_000, validation_alias="STRATEGIES_CHUNK_SIZE")
    #: Aggregates each process keeps decoded (`infra.eventstore.aggregate_cache`); 0: none.
    aggregate_cache_size: int = Field(
        default=250_000, ge=0, le=10_000_000, validation_alias="STRATEGIES_AGGREGATE_CACHE"
    )
    #: Embedded mode only: the read models in a child process of their own, or in a task of
    #: the engine (`infra.bootstrap.projector`).
    embedded_projections: Literal["process", "inline"] = Field(
        default="process", validation_alias="STRATEGIES_EMBEDDED_PROJECTIONS"
    )
    master_key: SecretStr | None = Field(default=None, validation_alias="STRATEGIES_MASTER_KEY")
    #: Keys that still open secrets but never seal (comma-separated): the one before a
    #: rotation, or the next one during it (`infra.postgres.master_key`).
    master_key_previous: SecretStr | None = Field(
        default=None, validation_alias="STRATEGIES_MASTER_KEY_PREVIOUS"
    )
    admin_token: SecretStr | None = Field(default=None, validation_alias="STRATEGIES_ADMIN_TOKEN")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, validation_alias="STRATEGIES_MAX_BODY_BYTES"
    )
    drain_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, validation_alias="STRATEGIES_DRAIN_TIMEOUT_S"
    )
    #: A worker's own endpoint for /metrics, /health/live and /health/ready (issue 20);
    #: unset: none. `serve` answers them on its HTTP port.
    metrics_port: int | None = Field(
        default=None, ge=1, le=65535, validation_alias="STRATEGIES_METRICS_PORT"
    )
    metrics_host: str = Field(default="127.0.0.1", validation_alias="STRATEGIES_METRICS_HOST")
    #: `/health` calls a role stuck when work has waited on it this long and none of its
    #: processes made progress meanwhile (issue 20).
    stuck_after_s: float = Field(
        default=300.0, ge=1, le=86_400, validation_alias="STRATEGIES_STUCK_AFTER_S"
    )
    #: Seconds between two rounds of the policy scheduler (the `scheduler` role).
    scheduler_interval_s: float = Field(
        default=30.0, gt=0, le=3600, validation_alias="STRATEGIES_SCHEDULER_INTERVAL_S"
    )
    # The per-request limits of spec §11.19, which it leaves to each installation.
    max_participants: int = Field(
        default=Limits.max_participants, ge=1, validation_alias="STRATEGIES_MAX_PARTICIPANTS"
    )
    max_allocations: int = Field(
        default=Limits.max_allocations, ge=1, validation_alias="STRATEGIES_MAX_ALLOCATIONS"
    )
    #: Traces (issue 20): exported over OTLP/HTTP to `<endpoint>/v1/traces` when set, else
    #: none are recorded. OpenTelemetry's own names; the SDK reads its other OTEL_* variables
    #: (headers, timeout, sampler, batching) itself.
    otel_exporter_otlp_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    #: The traces' service name; unset: one per process role (`strategies-serve`, ...).
    otel_service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")
    #: The venue adapter: `simulated`, or `package.module:factory`, imported here at start-up
    #: so that a wrong one is a settings error (docs/venue.md).
    venue_adapter: str = Field(default="simulated", validation_alias="STRATEGIES_VENUE")
    # Development only: webhooks to http and to loopback/private addresses (domain.webhook_url).
    webhook_allow_private: bool = Field(
        default=False, validation_alias="STRATEGIES_WEBHOOK_ALLOW_PRIVATE"
    )

    # The HTTP edge (issue 15): what one response may weigh, which Host headers and proxies
    # are believed, and how long a slow or idle client may hold a connection.
    max_response_bytes: int = Field(
        default=8 * 1024 * 1024, ge=64 * 1024, validation_alias="STRATEGIES_MAX_RESPONSE_BYTES"
    )
    trusted_hosts: str = Field(default="*", validation_alias="STRATEGIES_TRUSTED_HOSTS")
    forwarded_allow_ips: str = Field(default="", validation_alias="STRATEGIES_FORWARDED_ALLOW_IPS")
    http_header_timeout_s: float = Field(
        default=10.0, gt=0, le=300, validation_alias="STRATEGIES_HTTP_HEADER_TIMEOUT_S"
    )
    http_keepalive_timeout_s: int = Field(
        default=5, ge=1, le=300, validation_alias="STRATEGIES_HTTP_KEEPALIVE_TIMEOUT_S"
    )
    http_max_connections: int = Field(
        default=1000, ge=1, validation_alias="STRATEGIES_HTTP_MAX_CONNECTIONS"
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            scheme = value.get_secret_value().partition("://")[0]
            if scheme not in ("postgresql", "postgres"):
                msg = "must be a postgresql://user:password@host:port/dbname URL"
                raise ValueError(msg)
        return value

    @field_validator("master_key", "master_key_previous")
    @classmethod
    def _base64_keys(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here so that a bad key is reported with the other variables; which
        # command needs a key at all (and a missing one) is the command's business.
        parts = value.get_secret_value().split(",") if value is not None else []
        for part in filter(None, map(str.strip, parts)):
            try:
                key = base64.b64decode(part, validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != MASTER_KEY_BYTES:
                raise ValueError(
                    f"must be the base64 of {MASTER_KEY_BYTES} bytes "
                    "(make one with `strategies master-key generate`)"
                )
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str | None) -> str | None:
        if value is None:
            return None
        servers = [server.strip() for server in value.split(",") if server.strip()]
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                msg = f"must be a comma-separated list of host:port ({server!r} is not)"
                raise ValueError(msg)
        return ",".join(servers)

    @field_validator("venue_adapter")
    @classmethod
    def _venue_factory(cls, value: str) -> str:
        value = value.strip()
        if value != "simulated":
            _import_factory(value)
        return value

    @property
    def venue_factory(self) -> Callable[[], object] | None:
        """The adapter's factory; None for the simulated venue."""
        return None if self.venue_adapter == "simulated" else _import_factory(self.venue_adapter)

    @field_validator("otel_exporter_otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL (the collector's OTLP/HTTP base)")
        return value.strip()

    @field_validator("trusted_hosts")
    @classmethod
    def _host_patterns(cls, value: str) -> str:
        for pattern in _listed(value):
            name = pattern.removeprefix("*.")
            if pattern != "*" and not _HOST_NAME.fullmatch(name):
                msg = f"must be a comma-separated list of host names, *.domain or * ({pattern!r})"
                raise ValueError(msg)
        return value

    @field_validator("webhook_allow_private", mode="before")
    @classmethod
    def _strict_boolean(cls, value: object) -> object:
        # pydantic would also read yes/on/1/t as true: a switch that opens the network to
        # the webhook sender takes exactly `true` or `false`.
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise ValueError("must be true or false")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Relative paths would follow the working directory of whichever process reads them.
        return value.expanduser().resolve()

    @property
    def postgres(self) -> PostgresSection:
        """Embedded server data (cluster, log, last port) lives in `<data_dir>/postgres`."""
        return PostgresSection(url=self.database_url, data_dir=self.data_dir / "postgres")

    @property
    def kafka(self) -> KafkaSection:
        return KafkaSection(
            bootstrap_servers=self.kafka_bootstrap_servers,
            partitions=self.kafka_partitions,
            replication_factor=self.kafka_replication_factor,
            connection=self.kafka_connection,
        )

    @property
    def log(self) -> LogSection:
        return LogSection(level=self.log_level, format=self.log_format)

    @property
    def http(self) -> HttpSection:
        return HttpSection(
            host=self.http_host,
            port=self.http_port,
            trusted_hosts=_listed(self.trusted_hosts),
            forwarded_allow_ips=_listed(self.forwarded_allow_ips),
            header_timeout_s=self.http_header_timeout_s,
            keepalive_timeout_s=self.http_keepalive_timeout_s,
            max_connections=self.http_max_connections,
        )

    @property
    def limits(self) -> Limits:
        """What one request may hold; the domain's other limits keep their defaults."""
        return Limits(max_participants=self.max_participants, max_allocations=self.max_allocations)


_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


def _listed(value: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in value.split(",") if item.strip())


def _import_factory(spec: str) -> Callable[[], object]:
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError("must be simulated or package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # whatever the adapter's import raises, one line says it
        raise ValueError(f"cannot import {module_name}: {type(error).__name__}: {error}") from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f"{module_name} has no callable {name}")
    return cast("Callable[[], object]", factory)


def load_settings() -> Settings:
    """Read the environment and the `.env` file, turning pydantic's report into one line
    per bad variable."""
    named = os.environ.get(ENV_FILE_VARIABLE, "").strip()
    env_file = Path(named or ENV_FILE).expanduser().absolute()
    if named and not env_file.is_file():
        raise SettingsError(
            f"invalid configuration in the environment:\n  {ENV_FILE_VARIABLE}: "
            f"no such file ({named!r})"
        )
    if env_file.is_file():
        # Child processes (the read models' process, bench workers) start elsewhere: they
        # must read the same file.
        os.environ[ENV_FILE_VARIABLE] = str(env_file)
    try:
        return Settings(_env_file=env_file if env_file.is_file() else None)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = ["invalid configuration in the environment:"]
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"])
        line = f"  {name}: {error['msg'].removeprefix('Value error, ')}"
        if name not in _SECRET_VARIABLES and isinstance(error.get("input"), str | int):
            line += f" (got {error['input']!r})"
        lines.append(line)
    return "\n".join(lines)
