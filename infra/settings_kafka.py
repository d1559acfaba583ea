"""How to reach a Kafka cluster that is not the local test broker: topic sizing, transport
security and authentication, mixed into `infra.settings.Settings`.

`STRATEGIES_KAFKA_PARTITIONS` and `STRATEGIES_KAFKA_REPLICATION_FACTOR` size the topics the
bus creates (`infra.bus.topics`). The `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*` and
`KAFKA_SSL_*` variables become one `KafkaConnection`, whose `client_options()` every aiokafka
client we create receives: the bus's producer, its consumers (through faststream), the admin
client that creates topics, the `/health` probe and the local broker's readiness probe. One
object for all of them, so no client can be left talking PLAINTEXT to a secured cluster.

The checks are strict and each names its variable: a SASL protocol needs a mechanism, a
username and a password; SASL variables with a protocol that does not use them, or TLS files
without TLS, are refused rather than silently ignored (an operator who set a password believes
the connection is authenticated). TLS files must be readable and load as PEM, here, at start-up,
not at the first connection.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})

#: Never echoed back in an error message.
KAFKA_SECRET_VARIABLES = frozenset({"KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD"})


@dataclass(frozen=True)
class KafkaConnection:
    """The security options of every Kafka client of this process (PLAINTEXT by default)."""

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in SASL_PROTOCOLS

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in TLS_PROTOCOLS

    def ssl_context(self) -> ssl.SSLContext | None:
        """Certificates verified against `ssl_cafile` (else the system's CAs), host names
        checked; a client certificate when `ssl_certfile` is set."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=None if self.ssl_cafile is None else str(self.ssl_cafile)
        )
        if self.ssl_certfile is not None:
            load_client_certificate(
                context, self.ssl_certfile, self.ssl_keyfile, self.ssl_key_password
            )
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient and
        AIOKafkaClient alike."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            assert self.sasl_password is not None  # the settings refuse SASL without one
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        return options

    def __str__(self) -> str:
        """For log lines: what is used, never the password."""
        if self.uses_sasl:
            return f"{self.security_protocol} ({self.sasl_mechanism} as {self.sasl_username})"
        return self.security_protocol


def load_client_certificate(
    context: ssl.SSLContext, certfile: Path, keyfile: Path | None, password: SecretStr | None
) -> None:
    # A callable, never None: with None, OpenSSL would prompt on the terminal for the pass
    # phrase of an encrypted key, and a worker would hang at start-up.
    secret = b"" if password is None else password.get_secret_value().encode()
    context.load_cert_chain(
        str(certfile), None if keyfile is None else str(keyfile), lambda: secret
    )


class KafkaSettings(BaseModel):
    """Fields and checks; `Settings` reads them from the environment with the rest."""

    kafka_partitions: int = Field(
        default=8, ge=1, le=10_000, validation_alias="STRATEGIES_KAFKA_PARTITIONS"
    )
    kafka_replication_factor: int = Field(
        default=1, ge=1, le=32_767, validation_alias="STRATEGIES_KAFKA_REPLICATION_FACTOR"
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL"
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None, validation_alias="KAFKA_SASL_MECHANISM"
    )
    kafka_sasl_username: str | None = Field(default=None, validation_alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, validation_alias="KAFKA_SASL_PASSWORD"
    )
    kafka_ssl_cafile: Path | None = Field(default=None, validation_alias="KAFKA_SSL_CAFILE")
    kafka_ssl_certfile: Path | None = Field(default=None, validation_alias="KAFKA_SSL_CERTFILE")
    kafka_ssl_keyfile: Path | None = Field(default=None, validation_alias="KAFKA_SSL_KEYFILE")
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, validation_alias="KAFKA_SSL_KEY_PASSWORD"
    )

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _readable_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = value.expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        if not os.access(path, os.R_OK):
            raise ValueError(f"not readable by this process: {path}")
        if info.field_name == "kafka_ssl_cafile":
            _load(lambda: ssl.create_default_context(cafile=str(path)), "CA certificates")
        return path

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """The checks across variables, each reported under the variable to change; they
        run once every variable is valid on its own."""
        problems = [*self._sasl_problems(), *self._tls_problems()]
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("kafka_settings", message),
                        loc=(name,),
                        input=None,
                    )
                    for name, message in problems
                ],
            )
        return self

    def _sasl_problems(self) -> list[tuple[str, str]]:
        protocol = self.kafka_security_protocol
        given = {
            "KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        if protocol in SASL_PROTOCOLS:
            hints = {"KAFKA_SASL_MECHANISM": ": PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"}
            return [
                (name, f"required with KAFKA_SECURITY_PROTOCOL={protocol}{hints.get(name, '')}")
                for name, value in given.items()
                if value is None
            ]
        return [
            (name, _only_with("SASL_PLAINTEXT or SASL_SSL", protocol))
            for name, value in given.items()
            if value is not None
        ]

    def _tls_problems(self) -> list[tuple[str, str]]:
        given = {
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
            "KAFKA_SSL_KEY_PASSWORD": self.kafka_ssl_key_password,
        }
        if self.kafka_security_protocol not in TLS_PROTOCOLS:
            return [
                (name, _only_with("SSL or SASL_SSL", self.kafka_security_protocol))
                for name, value in given.items()
                if value is not None
            ]
        certfile = self.kafka_ssl_certfile
        if certfile is None:
            return [
                (name, "set without KAFKA_SSL_CERTFILE")
                for name in ("KAFKA_SSL_KEYFILE", "KAFKA_SSL_KEY_PASSWORD")
                if given[name] is not None
            ]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            _load(
                lambda: load_client_certificate(
                    context, certfile, self.kafka_ssl_keyfile, self.kafka_ssl_key_password
                ),
                "a client certificate with its key (KAFKA_SSL_KEYFILE, KAFKA_SSL_KEY_PASSWORD)",
            )
        except ValueError as error:
            return [("KAFKA_SSL_CERTFILE", str(error))]
        return []

    @property
    def kafka_connection(self) -> KafkaConnection:
        return KafkaConnection(
            security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=self.kafka_sasl_password,
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_key_password=self.kafka_ssl_key_password,
        )


def _only_with(protocols: str, protocol: str) -> str:
    return f"only used with KAFKA_SECURITY_PROTOCOL={protocols}, and it is {protocol}"


def _load(action: Any, what: str) -> None:
    try:
        action()
    except (ssl.SSLError, OSError) as error:
        raise ValueError(f"does not load as {what}: {error}") from None
