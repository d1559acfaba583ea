"""Topics exist, with our partition count, before anyone produces to or consumes from them.

Left to the broker, a topic appears on first use with the broker's `num.partitions`, which
would silently cap the parallelism of a stage. So the bus creates its topics itself with
aiokafka's admin client: creating is idempotent (an existing topic is success), and an
existing topic keeps its partitions. More partitions are never added automatically, since
that moves keys to other partitions and breaks per-key order for records in flight; a topic
with fewer partitions than asked is logged. The in-process bus has nothing to create.

After creating, we wait until every partition has a leader: a producer that starts right
after CreateTopics otherwise retries through NotLeaderForPartition for a moment.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import TopicAlreadyExistsError, for_code  # type: ignore[import-untyped]

from infra.logging import get_logger
from infra.settings_kafka import KafkaConnection

if TYPE_CHECKING:
    from collections.abc import Iterable

log = get_logger(__name__)

_POLL_SECONDS = 0.1


class TopicSetupError(Exception):
    """Raised when a topic cannot be created or its partitions get no leader in time."""


async def ensure_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    partitions: int,
    replication_factor: int = 1,
    client_id: str = "strategies-admin",
    wait_seconds: float = 30.0,
    connection: KafkaConnection | None = None,
) -> dict[str, int]:
    """Create the missing `topics`; return the partition count each topic has."""
    names = sorted(set(topics))
    if not names:
        return {}
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        request_timeout_ms=int(wait_seconds * 1000),
        **(connection or KafkaConnection()).client_options(),
    )
    await admin.start()
    try:
        await _create(admin, names, partitions, replication_factor, wait_seconds)
        counts = await _wait_for_leaders(admin, names, time.monotonic() + wait_seconds)
    finally:
        await admin.close()
    for name, count in counts.items():
        if count < partitions:
            log.warning("bus.topic_has_fewer_partitions", topic=name, has=count, wanted=partitions)
    return counts


async def _create(
    admin: Any, names: list[str], partitions: int, replication_factor: int, wait_seconds: float
) -> None:
    response = await admin.create_topics(
        [NewTopic(name, partitions, replication_factor) for name in names],
        timeout_ms=int(wait_seconds * 1000),
    )
    for result in response.to_object()["topic_errors"]:
        code = result["error_code"]
        if code == 0:
            log.info("bus.topic_created", topic=result["topic"], partitions=partitions)
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            continue
        raise TopicSetupError(
            f"cannot create topic {result['topic']!r}: {error.__name__} "
            f"({result.get('error_message') or 'no message'})"
        )


async def _wait_for_leaders(admin: Any, names: list[str], deadline: float) -> dict[str, int]:
    while True:
        described = await admin.describe_topics(names)
        counts = {
            topic["topic"]: len(topic["partitions"])
            for topic in described
            if topic["error_code"] == 0
            and topic["partitions"]
            and all(p["leader"] >= 0 for p in topic["partitions"])
        }
        if len(counts) == len(names):
            return counts
        if time.monotonic() >= deadline:
            missing = sorted(set(names) - counts.keys())
            raise TopicSetupError(f"topics without a leader for every partition: {missing}")
        await asyncio.sleep(_POLL_SECONDS)
