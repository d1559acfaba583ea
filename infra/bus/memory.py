"""The in-process bus of embedded mode: Kafka's topic and consumer-group semantics in one process.

Each topic keeps its log in memory, split into `partitions` partitions; a record's partition
is `crc32(key) % partitions`, stable across runs (keyless records go round-robin). Every
(topic, group) keeps its own committed offset per partition, like a Kafka consumer group, so
a group reads the topic from the beginning ("earliest") even when it subscribed after the
records were published.

One task per (topic, group, partition) hands the records to the handler one at a time, so
per-key order holds while partitions run concurrently. The offset advances only after the
handler returned; a handler that raises is logged and called again with the same record after
an exponential back-off (`Delivery.redelivered` counts the retries), and the records behind
it in that partition wait, while the other partitions keep flowing. `stop()` lets in-flight
handler calls finish (up to `graceful_timeout`) and keeps the offsets, so `start()` again
resumes where the group left off, like a consumer that rejoins its group.

Retention: a long-running embedded process must not keep every event forever, so records
that every subscribed group has committed are dropped, in batches. Backpressure: where Kafka
keeps a slow group's backlog on disk, this bus would keep it in memory (a million-Trader
enrollment ran the relay 430,000 events ahead of the read models, over 1 GiB), so a publisher
waits while a partition holds more than `max_backlog` records its slowest group has not
handled; the relay, its only bulk publisher, then runs at the consumers' pace. A group that only
subscribes after a restart therefore starts at the oldest record still held, as a Kafka
consumer with "earliest" starts at the oldest record the retention kept. A topic that no group
reads once the bus runs (groups subscribe before `start`) keeps nothing: in embedded mode the
command results, say, have no reader in the process, and were held forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import zlib
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING

from infra.bus import BatchHandler, Delivery, Handler, Record
from infra.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

log = get_logger(__name__)

#: Committed records are dropped once this many can go at once (a list slice is O(n)).
_TRIM_BATCH = 1024
#: Records per partition not yet handled by its slowest group before publishers wait.
DEFAULT_MAX_BACKLOG = 20_000


def partition_for(key: str, partitions: int) -> int:
    """The partition of a keyed record: the same in every process and every run."""
    return zlib.crc32(key.encode()) % partitions


@dataclass
class _Partition:
    records: list[Delivery] = field(default_factory=list)
    #: The offset of records[0]; grows as committed records are dropped.
    base: int = 0
    #: One wake-up event per reading group, set when a record is appended.
    waiters: set[asyncio.Event] = field(default_factory=set)
    #: Set when a group commits: a publisher waiting for the backlog to shrink looks again.
    drained: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    def at(self, offset: int) -> Delivery:
        return self.records[offset - self.base]

    def trim(self, committed: int) -> None:
        if committed - self.base >= _TRIM_BATCH:
            del self.records[: committed - self.base]
            self.base = committed


@dataclass
class _Topic:
    partitions: list[_Partition]
    round_robin: Iterator[int]
    groups: list[_Group] = field(default_factory=list)


@dataclass
class _Group:
    topic: str
    name: str
    handler: Handler | None
    #: The committed offset (next record to hand out) per partition; kept across restarts.
    offsets: list[int]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Set instead of `handler` by `subscribe_batch`: several records of a partition per call.
    batch_handler: BatchHandler | None = None
    max_batch: int = 1


class InProcessBus:
    """A `Bus` for one process: same topics, keys, groups and retries as `KafkaBus`."""

    def __init__(
        self,
        partitions: int = 8,
        *,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        graceful_timeout: float = 30.0,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
    ) -> None:
        if partitions < 1:
            raise ValueError("a topic needs at least one partition")
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        self.partitions = partitions
        self.max_backlog = max_backlog
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._graceful_timeout = graceful_timeout
        self._topics: dict[str, _Topic] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._running = False
        self._stopping = asyncio.Event()

    def subscribe(self, topic: str, group: str, handler: Handler) -> None:
        self._add(_Group(topic, group, handler, [0] * self.partitions))

    def subscribe_batch(
        self, topic: str, group: str, handler: BatchHandler, max_batch: int = 500
    ) -> None:
        """Like `subscribe`, but the handler gets up to `max_batch` consecutive records of one
        partition at a time (whatever is waiting), committed together once it returns: for
        consumers whose cost is per call, such as a projection writing one transaction."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._add(_Group(topic, group, None, [0] * self.partitions, [], handler, max_batch))

    def _add(self, subscription: _Group) -> None:
        if self._running:
            raise RuntimeError("subscribe before start()")
        key = (subscription.topic, subscription.name)
        if key in self._groups:
            raise ValueError(f"group {key[1]!r} already has a handler for {key[0]!r}")
        self._groups[key] = subscription
        self._topic(subscription.topic).groups.append(subscription)

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._stopping = asyncio.Event()
        for group in self._groups.values():
            group.tasks = [
                asyncio.create_task(
                    self._consume(group, partition),
                    name=f"bus:{group.topic}:{group.name}:{partition}",
                )
                for partition in range(self.partitions)
            ]

    async def stop(self) -> None:
        """Stop handing out records, let in-flight handler calls finish, keep the offsets."""
        if not self._running:
            return
        self._running = False
        self._stopping.set()
        for topic in self._topics.values():
            for partition in topic.partitions:
                partition.drained.set()
                for wake in partition.waiters:
                    wake.set()
        tasks = [task for group in self._groups.values() for task in group.tasks]
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self._graceful_timeout)
        for task in late:
            log.warning("bus.stop_timeout", task=task.get_name(), after=self._graceful_timeout)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def publish_many(self, records: Sequence[Record]) -> None:
        """Append to the logs (that is the acknowledgement) and wake the readers; then, while
        running, wait until every partition written to is back within `max_backlog`."""
        woken: set[asyncio.Event] = set()
        written: dict[tuple[str, int], _Topic] = {}
        for record in records:
            topic = self._topic(record.topic)
            if self._running and not topic.groups:
                continue  # nobody can ever read it (`has_readers`)
            number = (
                next(topic.round_robin)
                if record.key is None
                else partition_for(record.key, self.partitions)
            )
            partition = topic.partitions[number]
            partition.records.append(
                Delivery(
                    topic=record.topic,
                    value=record.value,
                    key=record.key,
                    headers=MappingProxyType(dict(record.headers)),
                    partition=number,
                    offset=partition.end,
                )
            )
            woken |= partition.waiters
            written[(record.topic, number)] = topic
        for wake in woken:
            wake.set()
        for (_, number), topic in written.items():
            await self._room(topic, number)

    async def _room(self, topic: _Topic, number: int) -> None:
        partition = topic.partitions[number]
        while self._running and topic.groups:
            slowest = min(group.offsets[number] for group in topic.groups)
            if partition.end - slowest <= self.max_backlog:
                return
            partition.drained.clear()
            await partition.drained.wait()

    async def publish(self, record: Record) -> None:
        await self.publish_many([record])

    def assigned_partitions(self, topic: str, group: str) -> frozenset[int]:
        """Every partition while running: one process is the whole group."""
        if not self._running or (topic, group) not in self._groups:
            return frozenset()
        return frozenset(range(self.partitions))

    def idle(self) -> bool:
        """Whether every record published so far has been handled by every group.

        Nothing here survives the process, so this is when the outbox relay may record its
        position: a crash before that republishes from the last idle point, and the consumers,
        being idempotent, catch up without losing anything.
        """
        return all(
            group.offsets[number] >= partition.end
            for topic in self._topics.values()
            for group in topic.groups
            for number, partition in enumerate(topic.partitions)
        )

    def has_readers(self, topic: str) -> bool:
        """Whether a group reads `topic`: a record of a topic without one is accepted and
        dropped once the bus runs, so a publisher may skip building it."""
        held = self._topics.get(topic)
        return held is not None and bool(held.groups)

    def retained(self, topic: str) -> int:
        """How many records of `topic` are held in memory (for monitoring embedded mode)."""
        held = self._topics.get(topic)
        return 0 if held is None else sum(len(p.records) for p in held.partitions)

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(
                partitions=[_Partition() for _ in range(self.partitions)],
                round_robin=itertools.cycle(range(self.partitions)),
            )
        return topic

    async def _consume(self, group: _Group, number: int) -> None:
        topic = self._topics[group.topic]
        partition = topic.partitions[number]
        wake = asyncio.Event()
        partition.waiters.add(wake)
        try:
            while not self._stopping.is_set():
                wake.clear()
                # Below the base means those records were trimmed: start at the oldest kept.
                offset = max(group.offsets[number], partition.base)
                if offset >= partition.end:
                    await wake.wait()
                    continue
                last = min(partition.end, offset + group.max_batch)
                records = [partition.at(o) for o in range(offset, last)]
                if await self._deliver(group, records):
                    group.offsets[number] = last
                    partition.trim(min(g.offsets[number] for g in topic.groups))
                    partition.drained.set()
        finally:
            partition.waiters.discard(wake)

    async def _deliver(self, group: _Group, records: list[Delivery]) -> bool:
        """Hand records over until the handler returns; False when stopped before that."""
        attempt = 0
        first = records[0]
        while True:
            handed = [replace(r, redelivered=attempt) for r in records] if attempt else records
            try:
                if group.batch_handler is not None:
                    await group.batch_handler(handed)
                else:
                    assert group.handler is not None
                    await group.handler(handed[0])
            except Exception:
                delay = min(self._retry_max, self._retry_initial * 2**attempt)
                log.warning(
                    "bus.handler_failed",
                    topic=first.topic,
                    group=group.name,
                    partition=first.partition,
                    offset=first.offset,
                    records=len(records),
                    key=first.key,
                    attempt=attempt + 1,
                    retry_in=delay,
                    exc_info=True,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                if self._stopping.is_set():
                    return False
                attempt += 1
            else:
                return True
