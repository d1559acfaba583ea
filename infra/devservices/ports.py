"""Loopback ports for the local services we start (embedded PostgreSQL, the Kafka broker)."""

from __future__ import annotations

import contextlib
import socket

LOOPBACK = "127.0.0.1"


def port_is_free(port: int) -> bool:
    """Whether `port` can be bound on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The servers set SO_REUSEADDR too, so TIME_WAIT leftovers do not count as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together while chosen, so distinct)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((LOOPBACK, 0))
        return [int(probe.getsockname()[1]) for probe in probes]


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free (so a restart keeps its address), else any free port."""
    if preferred is not None and port_is_free(preferred):
        return preferred
    return free_ports(1)[0]
