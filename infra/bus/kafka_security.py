"""The one `KafkaConnection` in the form faststream's `KafkaBroker` takes (`security=`).

faststream accepts no raw aiokafka security arguments: it turns a security object back into
them (`faststream.kafka.security.parse_security`) for every consumer it starts. The objects
below are chosen so that the round trip gives exactly `KafkaConnection.client_options()`,
which the bus's own producer and admin clients receive directly (a unit test holds the two
equal).
"""

from __future__ import annotations

from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from infra.settings_kafka import KafkaConnection

_SASL = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def faststream_security(connection: KafkaConnection) -> BaseSecurity | None:
    context = connection.ssl_context()
    if connection.uses_sasl:
        assert connection.sasl_mechanism is not None
        assert connection.sasl_username is not None
        assert connection.sasl_password is not None
        return _SASL[connection.sasl_mechanism](
            connection.sasl_username,
            connection.sasl_password.get_secret_value(),
            ssl_context=context,
            use_ssl=connection.uses_tls,
        )
    if connection.uses_tls:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None
