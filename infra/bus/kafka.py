"""The bus on real Kafka: faststream's `KafkaBroker` with explicit, per-partition commits.

Consuming. One faststream subscriber per (topic, group) per process, with
`ack_policy=MANUAL`, so faststream never commits on its own; it hands us one record at a time
(in order per partition) and we call the handler (`subscribe_batch`: what one fetch returned,
as one run of consecutive records per partition, for consumers whose cost is per call). One
process therefore runs one handler call at a time per subscription: parallelism comes from
partitions spread over the processes (or bus instances) of a group. faststream's dependency
injection is off (`apply_types=False`): it resolved context fields in a worker thread per
record, which capped a consumer near 1k/s.

Committing. After the handler returns, the record's next offset is queued, and a background
task commits the queue at most every `commit_interval` with explicit offsets
(`consumer.commit({tp: offset + 1})`). A commit is a broker round trip (~2 ms), so committing
record by record would cap a consumer at a few hundred records a second; queued commits only
ever name handled records. Before partitions are revoked (rebalance) and on `stop()`, the
in-flight handler is awaited and the queue is flushed, so a clean hand-over redelivers
nothing; a crash redelivers the records handled in the last `commit_interval` or so.

Failures keep per-key order without blocking other partitions. A handler that raises is
logged (`bus.handler_failed`), nothing is committed for it, and its partition is rewound to
the failed record (`seek`) and paused; a timer resumes it after an exponential back-off
(`retry_initial`, doubling, capped at `retry_max`). The consumer keeps serving its other
partitions meanwhile, and the failed record comes back first, with everything behind it
still in order. `Delivery.redelivered` counts the retries seen by this process since it got
the partition (a record inherited after a rebalance or a crash starts at 0 again).

Producing. `publish_many` sends every record through an aiokafka producer of our own
(`acks="all"`, idempotent), then awaits all the acknowledgements together; faststream's
`publish` would add content-type and correlation_id headers to every record. It returns only
when every record is acknowledged. Otherwise it logs `bus.publish_failed` and raises: the
caller retries the whole batch (the relay does), so a failure duplicates records that were
acknowledged before it but never loses one, and nothing of a key is acknowledged after a
record of that key that failed (the producer sends one batch per partition at a time; a
record refused before sending stops the sending of the rest). After a refused batch the
producer is replaced: the idempotent producer numbers each partition's batches, and once the
broker refused one, every later batch to that partition was refused as out of sequence, so
no retry could ever succeed until the process restarted.

Topics are created with `partitions` partitions and `replication_factor` replicas at
`start()` (the subscribed ones), and on the first publish to a topic this bus has not created
yet. Every client the bus makes (faststream's consumers, our producer, the admin client that
creates topics) gets the same `connection`: its TLS and SASL options (`infra.settings_kafka`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiokafka import (  # type: ignore[import-untyped]
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from faststream.kafka import KafkaBroker, Topic
from faststream.middlewares import AckPolicy

from infra.bus import BatchHandler, Delivery, Handler, Record
from infra.bus.kafka_reach import BrokerRefusedError, reach
from infra.bus.kafka_security import faststream_security
from infra.bus.topics import ensure_topics
from infra.logging import get_logger
from infra.settings_kafka import KafkaConnection
from infra.transient import is_transient

if TYPE_CHECKING:
    from collections.abc import Sequence

    from faststream.kafka.subscriber.usecase import DefaultSubscriber
    from faststream.message import StreamMessage

log = get_logger(__name__)
# faststream logs "Received"/"Processed" for every record; at DEBUG they cost nothing.
_FASTSTREAM_LOG = logging.getLogger("infra.bus.faststream")


class KafkaBus:
    """A `Bus` on a Kafka cluster; see the module docstring for the delivery rules."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        partitions: int = 8,
        replication_factor: int = 1,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
        commit_interval: float = 0.05,
        graceful_timeout: float = 30.0,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        max_poll_interval_ms: int = 300_000,
        connect_timeout: float = 60.0,
        connection: KafkaConnection | None = None,
    ) -> None:
        """`max_poll_interval_ms`: a handler call longer than this makes the consumer leave
        its group (its partitions go to another member, which redelivers what was not
        committed); Kafka's default."""
        self.partitions = partitions
        self._connect_timeout = connect_timeout
        self._bootstrap_servers = bootstrap_servers
        self._client_id = client_id
        self._replication_factor = replication_factor
        self._connection = connection or KafkaConnection()
        self._tuning = _Tuning(retry_initial, retry_max, commit_interval, graceful_timeout)
        self._graceful_timeout = graceful_timeout
        self._session_timeout_ms = session_timeout_ms
        self._heartbeat_interval_ms = heartbeat_interval_ms
        self._max_poll_interval_ms = max_poll_interval_ms
        self._broker = KafkaBroker(
            bootstrap_servers,
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            graceful_timeout=graceful_timeout,
            logger=_FASTSTREAM_LOG,
            log_level=logging.DEBUG,
            apply_types=False,  # `_raw_record` hands the handler the record itself
            security=faststream_security(self._connection),
        )
        self._producer: Any = None
        self._producer_lock = asyncio.Lock()
        self._groups: dict[tuple[str, str], _GroupConsumer] = {}
        self._created: set[str] = set()
        self._running = False
        self._stopped = False

    def subscribe(self, topic: str, group: str, handler: Handler) -> None:
        consumer = _GroupConsumer(topic, group, self._tuning, handler=handler)
        self._add(consumer, consumer.on_message)

    def subscribe_batch(
        self, topic: str, group: str, handler: BatchHandler, max_batch: int = 500
    ) -> None:
        """Like `subscribe`, but the handler gets the runs of consecutive records of each
        partition that one fetch returned (up to `max_batch` in all), committed together."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        consumer = _GroupConsumer(topic, group, self._tuning, batch_handler=handler)
        self._add(consumer, consumer.on_batch, batch=True, max_records=max_batch)

    def _add(self, consumer: _GroupConsumer, call: Any, **batching: Any) -> None:
        topic, group = consumer.topic, consumer.group
        if self._running:
            raise RuntimeError("subscribe before start()")
        if (topic, group) in self._groups:
            raise ValueError(f"group {group!r} already has a handler for {topic!r}")
        subscriber = self._broker.subscriber(
            Topic(topic, declare=False),  # created at start(), with our partition count
            group_id=group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.MANUAL,
            no_reply=True,
            listener=consumer,
            decoder=_raw_record,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_interval_ms,
            max_poll_interval_ms=self._max_poll_interval_ms,
            # The group waits this long for us to rejoin; revocation waits for the in-flight
            # handler (up to graceful_timeout) first, so leave room for it.
            rebalance_timeout_ms=int((self._graceful_timeout + 5) * 1000),
            **batching,
        )
        subscriber(call)
        consumer.subscriber = subscriber
        self._groups[topic, group] = consumer

    async def start(self) -> None:
        if self._running:
            return
        if self._stopped:
            raise RuntimeError("a stopped KafkaBus cannot start again; build a new one")
        await self._connect()
        self._running = True

    async def stop(self) -> None:
        """Stop fetching, finish the in-flight handlers, commit, then close the clients."""
        if not self._running:
            return
        self._running = False
        self._stopped = True
        groups = list(self._groups.values())
        for group in groups:
            group.stop_fetching()
        await asyncio.gather(*(group.drain(self._graceful_timeout) for group in groups))
        await self._stop_producer(self._producer)
        await self._broker.stop()

    async def publish_many(self, records: Sequence[Record]) -> None:
        if not self._running:
            raise RuntimeError("start() the bus before publishing")
        await self._create({record.topic for record in records} - self._created)
        producer = self._producer
        futures: list[asyncio.Future[Any]] = []
        unsent: Exception | None = None
        try:
            for record in records:
                futures.append(
                    await producer.send(
                        record.topic,
                        record.value,
                        key=None if record.key is None else record.key.encode(),
                        headers=[(name, value.encode()) for name, value in record.headers.items()],
                    )
                )
        except Exception as refused:  # before sending (too large, say): send nothing after it
            unsent = refused
        finally:
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if unsent is None and not failures:
            return
        error = failures[0] if failures else unsent
        log.error(
            "bus.publish_failed",
            failed=len(failures),
            unsent=len(records) - len(futures),
            records=len(records),
            error=repr(error),
        )
        if failures:
            await self._renew_producer(producer)
        assert error is not None
        raise error

    async def publish(self, record: Record) -> None:
        await self.publish_many([record])

    def unassigned(self) -> list[str]:
        """`topic/group` of each subscription holding no partition now (not joined yet, or
        mid-rebalance): a worker in that state is not ready (`infra/probes_server.py`)."""
        return [
            f"{topic}/{group}"
            for topic, group in sorted(self._groups)
            if not self.assigned_partitions(topic, group)
        ]

    def group_consumers(self) -> list[tuple[str, Any]]:
        """(group, aiokafka consumer) of each subscription started here: what the consumer
        lag metric asks (`infra.bus.kafka_lag`)."""
        found = [(group, c.consumer()) for (_, group), c in sorted(self._groups.items())]
        return [(group, consumer) for group, consumer in found if consumer is not None]

    def assigned_partitions(self, topic: str, group: str) -> frozenset[int]:
        """The partitions of `topic` this process holds in `group` now (none mid-rebalance)."""
        consumer = self._groups[topic, group].consumer()
        if consumer is None:
            return frozenset()
        return frozenset(tp.partition for tp in consumer.assignment() if tp.topic == topic)

    def _new_producer(self) -> Any:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            **self._connection.client_options(),
        )

    async def _renew_producer(self, failed: Any) -> None:
        """Replace the producer a refused batch left out of sequence (see the module doc)."""
        async with self._producer_lock:
            if self._producer is not failed:
                return  # a concurrent publish renewed it already
            fresh = self._new_producer()
            try:
                await fresh.start()
            except Exception as error:  # broker away: the next failure tries again
                log.warning("bus.producer_renew_failed", error=repr(error))
                await self._stop_producer(fresh)
                return
            self._producer = fresh
        log.warning("bus.producer_renewed")
        await self._stop_producer(failed)

    async def _stop_producer(self, producer: Any) -> None:
        """Flush and close; bounded, since an idempotent producer retries a broker that is
        away for ever."""
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), self._graceful_timeout)
        except Exception as error:
            log.warning("bus.producer_stop_failed", error=repr(error))

    async def _connect(self) -> None:
        """Create the topics and start the clients, waiting up to `connect_timeout` for a
        broker that is away: a worker started while the broker restarted used to exit at
        once, and nothing restarted it (seen in the chaos test: a role stayed down)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._connect_timeout
        delay = 0.5
        while True:
            try:
                await self._create({topic for topic, _ in self._groups})
                await self._broker.start()
                self._producer = self._new_producer()
                await self._producer.start()
                return
            except BaseException as error:  # a cancelled start must not leave clients behind
                with contextlib.suppress(Exception):
                    await self._broker.stop()
                await self._stop_producer(self._producer)
                self._producer = None
                retry = isinstance(error, Exception) and is_transient(error)
                if retry:
                    await self._refused_for_good(error)
                if not retry or loop.time() + delay > deadline:
                    raise
                log.warning("bus.broker_unreachable", retry_in=delay, error=repr(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _refused_for_good(self, error: BaseException) -> None:
        """Raise at once, naming the reason, when the broker refuses these credentials or
        this TLS setup: aiokafka reports that as an unreachable broker, and retrying it for
        `connect_timeout` would only delay the one line that says what to fix."""
        try:
            await reach(self._bootstrap_servers, self._connection, timeout_s=5.0)
        except BrokerRefusedError as refused:
            if refused.permanent:
                raise refused from error
        except Exception as probe_error:  # the probe is a diagnosis only, never a new failure
            log.debug("bus.reach_failed", error=repr(probe_error))

    async def _create(self, topics: set[str]) -> None:
        if not topics:
            return
        await ensure_topics(
            self._bootstrap_servers,
            topics,
            partitions=self.partitions,
            replication_factor=self._replication_factor,
            client_id=f"{self._client_id}-admin",
            connection=self._connection,
        )
        self._created |= topics


@dataclass(frozen=True)
class _Tuning:
    retry_initial: float
    retry_max: float
    commit_interval: float
    #: How long a rebalance waits for the in-flight handler before handing its partition over.
    revoke_timeout: float


class _GroupConsumer(ConsumerRebalanceListener):  # type: ignore[misc]
    """One (topic, group) in this process: calls the handler, commits, retries, hands over."""

    def __init__(
        self,
        topic: str,
        group: str,
        tuning: _Tuning,
        *,
        handler: Handler | None = None,
        batch_handler: BatchHandler | None = None,
    ) -> None:
        self.topic = topic
        self.group = group
        self.subscriber: DefaultSubscriber | None = None
        self._handler = handler
        self._batch_handler = batch_handler
        self._tuning = tuning
        #: The record each partition is retrying, and how many times it failed.
        self._failures: dict[Any, tuple[int, int]] = {}
        self._resumes: dict[Any, asyncio.TimerHandle] = {}
        #: Next offset to commit per partition: only ever past records whose handler returned.
        self._pending: dict[Any, int] = {}
        self._commit_lock = asyncio.Lock()
        self._commit_task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    async def on_message(self, record: Any) -> None:
        if self._stopping:
            return  # not handled, not committed: whoever owns the partition next gets it
        assert self._handler is not None
        tp = TopicPartition(record.topic, record.partition)
        delivery = self._delivery(tp, record)
        self._idle.clear()
        try:
            await self._handler(delivery)
        except Exception:
            self._retry_later(tp, delivery)
        else:
            self._handled(tp, record.offset)
        finally:
            self._idle.set()

    async def on_batch(self, records: Sequence[Any]) -> None:
        """A fetch's records, handed over as one run per partition; a failed run is retried
        from its first record (the partition pauses), the other partitions' runs commit."""
        if self._stopping:
            return
        assert self._batch_handler is not None
        runs: dict[Any, list[Any]] = {}
        for record in records:
            runs.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
        self._idle.clear()
        try:
            for tp, run in runs.items():
                deliveries = [self._delivery(tp, record) for record in run]
                try:
                    await self._batch_handler(deliveries)
                except Exception:
                    self._retry_later(tp, deliveries[0])
                else:
                    self._handled(tp, run[-1].offset)
        finally:
            self._idle.set()

    def _delivery(self, tp: Any, record: Any) -> Delivery:
        failed_offset, failures = self._failures.get(tp, (-1, 0))
        return _delivery(record, failures if failed_offset == record.offset else 0)

    def _handled(self, tp: Any, offset: int) -> None:
        self._failures.pop(tp, None)
        self._pending[tp] = offset + 1
        if self._commit_task is None or self._commit_task.done():
            self._commit_task = asyncio.create_task(self._commit_soon())

    def stop_fetching(self) -> None:
        self._stopping = True
        for handle in self._resumes.values():
            handle.cancel()
        self._resumes.clear()
        consumer = self.consumer()
        if consumer is not None:
            consumer.pause(*consumer.assignment())

    async def drain(self, grace: float) -> None:
        """Wait for the in-flight handler call, then commit what was handled."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("bus.drain_timeout", topic=self.topic, group=self.group, after=grace)
        await self._flush()
        if self._commit_task is not None:
            self._commit_task.cancel()

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        """Before the group hands partitions over: finish the current record, commit."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self._tuning.revoke_timeout)
        await self._flush()
        for tp in revoked:
            self._failures.pop(tp, None)
            self._pending.pop(tp, None)
            handle = self._resumes.pop(tp, None)
            if handle is not None:
                handle.cancel()

    async def on_partitions_assigned(self, assigned: set[Any]) -> None:
        log.info(
            "bus.partitions_assigned",
            topic=self.topic,
            group=self.group,
            partitions=sorted(tp.partition for tp in assigned),
        )

    def consumer(self) -> Any:
        return None if self.subscriber is None else self.subscriber.consumer

    def _retry_later(self, tp: Any, delivery: Delivery) -> None:
        attempt = delivery.redelivered + 1
        delay = min(self._tuning.retry_max, self._tuning.retry_initial * 2 ** (attempt - 1))
        log.warning(
            "bus.handler_failed",
            topic=delivery.topic,
            group=self.group,
            partition=delivery.partition,
            offset=delivery.offset,
            key=delivery.key,
            attempt=attempt,
            retry_in=delay,
            exc_info=True,
        )
        consumer = self.consumer()
        if self._stopping or consumer is None or tp not in consumer.assignment():
            return  # revoked meanwhile: the next owner starts from the committed offset
        self._failures[tp] = (delivery.offset, attempt)
        consumer.seek(tp, delivery.offset)
        consumer.pause(tp)
        self._resumes[tp] = asyncio.get_running_loop().call_later(delay, self._resume, tp)

    def _resume(self, tp: Any) -> None:
        self._resumes.pop(tp, None)
        consumer = self.consumer()
        if not self._stopping and consumer is not None and tp in consumer.assignment():
            consumer.resume(tp)

    async def _commit_soon(self) -> None:
        # One commit per interval at most: each costs the event loop as much as ~10 records.
        while self._pending:
            await asyncio.sleep(self._tuning.commit_interval)
            if not await self._commit():
                return

    async def _flush(self) -> None:
        while self._pending and await self._commit():
            pass

    async def _commit(self) -> bool:
        async with self._commit_lock:
            consumer = self.consumer()
            if consumer is None:
                return False
            offsets, self._pending = self._pending, {}
            assigned = consumer.assignment()
            offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
            if not offsets:
                return True
            try:
                await consumer.commit(offsets)
            except Exception as exc:  # any commit failure means "redeliver", never "crash"
                log.warning(
                    "bus.commit_failed", topic=self.topic, group=self.group, error=repr(exc)
                )
                for tp, offset in offsets.items():
                    self._pending.setdefault(tp, offset)
                return False
            return True


def _delivery(record: Any, redelivered: int) -> Delivery:
    return Delivery(
        topic=record.topic,
        value=record.value or b"",
        key=None if record.key is None else record.key.decode(errors="replace"),
        headers=MappingProxyType(
            {name: value.decode(errors="replace") for name, value in record.headers}
        ),
        partition=record.partition,
        offset=record.offset,
        redelivered=redelivered,
    )


async def _raw_record(message: StreamMessage[Any]) -> Any:
    """The aiokafka ConsumerRecord itself, bytes untouched (no JSON guess by faststream)."""
    return message.raw_message
