"""What the launcher remembers between runs (the state record) and which ports it can use.

The record (`state.json` in the broker home) survives the broker: ports and cluster id stay
so that a restart reuses the formatted data; only `pid` is cleared on stop.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from infra.devservices.kafka.config import BrokerPorts
from infra.devservices.ports import free_ports, port_is_free


@dataclass(frozen=True)
class BrokerState:
    kafka_version: str
    cluster_id: str
    client_port: int
    controller_port: int
    pid: int | None = None

    @property
    def ports(self) -> BrokerPorts:
        return BrokerPorts(client=self.client_port, controller=self.controller_port)

    def with_pid(self, pid: int | None) -> BrokerState:
        return replace(self, pid=pid)


def load_state(path: Path) -> BrokerState | None:
    """A missing or unreadable record means "nothing known": start over, never fail."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return BrokerState(
            kafka_version=str(raw["kafka_version"]),
            cluster_id=str(raw["cluster_id"]),
            client_port=int(raw["client_port"]),
            controller_port=int(raw["controller_port"]),
            pid=int(raw["pid"]) if raw.get("pid") is not None else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_state(path: Path, state: BrokerState) -> None:
    # Write-then-rename: a reader never sees half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def pick_free_ports() -> BrokerPorts:
    client, controller = free_ports(2)
    return BrokerPorts(client=client, controller=controller)


def ports_available(ports: BrokerPorts) -> bool:
    """Whether both recorded ports can be bound again (nothing else took them meanwhile)."""
    return port_is_free(ports.client) and port_is_free(ports.controller)
