"""Errors that say "a service is unreachable right now", not "this request is wrong".

The API answers them with a 503 and a retry hint; the command consumer retries them for as
long as they last, while any other error is retried a few times and then dead-lettered (the
record, not the service, is the likely cause).
"""

from __future__ import annotations

import socket

import aiokafka.errors  # type: ignore[import-untyped]
import asyncpg
import eventsourcing.persistence
import psycopg

# Database (or pool) unreachable, overloaded or shutting down: worth a retry, not a bug.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    psycopg.OperationalError,  # includes psycopg_pool.PoolTimeout
    eventsourcing.persistence.OperationalError,
    ConnectionError,  # refused or reset sockets, raised as is by asyncpg's connect
    socket.gaierror,
    TimeoutError,  # asyncpg's pool.acquire(timeout=...) among others
)
# A connection that died under a call (pg_terminate_backend, a restart) or a broker that is
# away: the next attempt on a fresh connection can succeed.
_DROPPED = (
    asyncpg.InterfaceError,
    psycopg.InterfaceError,
    eventsourcing.persistence.InterfaceError,
    aiokafka.errors.KafkaConnectionError,
    aiokafka.errors.KafkaTimeoutError,
)
_OUTAGES = UNAVAILABLE_ERRORS + _DROPPED


def is_transient(error: BaseException) -> bool:
    """True if `error`, or an error it was raised from, is an outage rather than a fault."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _OUTAGES):
            return True
        if isinstance(current, aiokafka.errors.KafkaError) and current.retriable:
            return True
        current = current.__cause__
    return False
