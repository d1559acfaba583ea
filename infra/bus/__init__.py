"""The message bus the workers run on: real Kafka, or an in-process bus in embedded mode.

Both give the same semantics, so the stage handlers are the same functions in both modes:
topics with keyed records (one key always lands on one partition, in order), consumer
groups (every group sees every record; within a group one handler call per record),
at-least-once delivery (an offset is committed only after its handler returned; a handler
that raises sees the record again after a back-off), and `publish_many` returning only once
every record is durably accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Record:
    """A record to publish."""

    topic: str
    value: bytes
    key: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """A record as a consumer sees it."""

    topic: str
    value: bytes
    key: str | None
    headers: Mapping[str, str]
    partition: int
    offset: int
    #: How many times this record was handed to this group before (0 on first delivery).
    redelivered: int = 0


Handler = Callable[[Delivery], Awaitable[None]]
#: Consecutive records of one partition, in order; the offsets commit together on return.
BatchHandler = Callable[[list[Delivery]], Awaitable[None]]


class Bus(Protocol):
    def subscribe(self, topic: str, group: str, handler: Handler) -> None:
        """Register `handler` for `topic` in consumer group `group` (before `start`)."""

    def subscribe_batch(
        self, topic: str, group: str, handler: BatchHandler, max_batch: int = 500
    ) -> None:
        """Like `subscribe`, with runs of consecutive records of one partition per call."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Stop consuming, let in-flight handler calls finish (graceful drain), then close."""

    async def publish_many(self, records: Sequence[Record]) -> None:
        """Publish in order per key; returns when every record is acknowledged."""

    async def publish(self, record: Record) -> None: ...
