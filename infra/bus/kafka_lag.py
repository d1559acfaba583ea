"""Consumer lag of this process's Kafka subscriptions (issue 20): for every partition a
group of this process holds, the partition's end offset minus the group's committed offset.

Only the partitions held here: each partition of a group is held by one process at a time,
so the processes' figures add up to the group's lag without counting one twice. A
partition never committed counts from its first offset still kept (`auto_offset_reset` is
earliest). Three broker round trips per consumer at most (end offsets, committed offsets,
first offsets), bounded by `TIMEOUT_S`: a broker that does not answer leaves the gauge as it
was, it never holds up the refresh of the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Seconds one consumer's questions may take.
TIMEOUT_S = 2.0


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    lag: int


async def consumer_lags(consumers: Iterable[tuple[str, Any]]) -> list[PartitionLag]:
    """The lag of every partition each (group, aiokafka consumer) holds now."""
    found: list[PartitionLag] = []
    for group, consumer in consumers:
        async with asyncio.timeout(TIMEOUT_S):
            found += await _lags(group, consumer)
    return found


async def _lags(group: str, consumer: Any) -> list[PartitionLag]:
    held = sorted(consumer.assignment())
    if not held:
        return []
    ends = await consumer.end_offsets(held)
    committed = dict(zip(held, await asyncio.gather(*map(consumer.committed, held)), strict=True))
    never = [tp for tp, offset in committed.items() if offset is None]
    firsts = await consumer.beginning_offsets(never) if never else {}
    return [
        PartitionLag(
            group,
            tp.topic,
            tp.partition,
            max(0, ends[tp] - (committed[tp] if committed[tp] is not None else firsts[tp])),
        )
        for tp in held
        if tp in ends
    ]
