"""Can this process's Kafka clients get in, and if not, why, in one line?

aiokafka's bootstrap logs each address's refusal and raises only "Unable to bootstrap from
[...]", so a wrong password, a TLS client at a plain listener and a broker that is down all
read the same. `reach` asks each bootstrap address itself, with the process's own
`KafkaConnection`, and its error names every address's reason. `/health` uses it as its
broker check; the bus asks it when its clients fail to start, and gives up at once on a
refusal that no retry can cure (`BrokerRefusedError.permanent`: authentication, SASL
mechanism, TLS), instead of retrying for its whole connect timeout.
"""

from __future__ import annotations

import asyncio
import ssl

from aiokafka.conn import create_conn  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    IllegalSaslStateError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest  # type: ignore[import-untyped]

from infra.logging import redact_text
from infra.settings_kafka import KafkaConnection

#: Refusals of this client, not outages: retrying with the same settings cannot help.
_REFUSALS = (
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    IllegalSaslStateError,
    ssl.SSLError,
)


class BrokerRefusedError(Exception):
    """Raised when no bootstrap address answered a metadata request; one line per process."""

    def __init__(self, reasons: list[str], *, permanent: bool) -> None:
        super().__init__("no Kafka bootstrap address let this client in: " + "; ".join(reasons))
        self.permanent = permanent


async def reach(bootstrap_servers: str, connection: KafkaConnection, timeout_s: float) -> None:
    """Return once one address answered a metadata request; else raise BrokerRefusedError."""
    reasons: list[str] = []
    permanent = False
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            async with asyncio.timeout(timeout_s):
                await _metadata(host, int(port), connection, timeout_s)
        except (OSError, KafkaError, TimeoutError) as error:
            permanent = permanent or isinstance(error, _REFUSALS)
            reasons.append(f"{server.strip()}: {_one_line(error)}")
        else:
            return
    raise BrokerRefusedError(reasons, permanent=permanent)


async def _metadata(host: str, port: int, connection: KafkaConnection, timeout_s: float) -> None:
    conn = await create_conn(
        host, port, request_timeout_ms=int(timeout_s * 1000), **connection.client_options()
    )
    try:
        await conn.send(MetadataRequest([]))
    finally:
        conn.close()


def _one_line(error: BaseException) -> str:
    text = " ".join(redact_text(str(error)).split())
    name = type(error).__name__
    return text if name in text else f"{name}: {text}" if text else name
