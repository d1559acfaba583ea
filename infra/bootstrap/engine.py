"""The composition root of the pipeline: builds the store, bus, venue and handlers for the
roles a process runs, and starts and stops them together.

Roles: `relay`, `credit-check`, `pricing`, `execution`, `commands`, `projections`,
`webhooks`; `all`
runs every one in this process. With KAFKA_BOOTSTRAP_SERVERS set the roles talk over Kafka
(each its own consumer group, so several processes share the work); without it they share
an in-process bus with the same semantics (embedded mode: then every role must run here).
In embedded mode the read models follow the event store's log instead of the bus, in a child
process by default (`infra.bootstrap.projector`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Literal, TypeVar

import asyncpg
import structlog
from pydantic import ValidationError

from domain.errors import DomainError
from domain.failures import STAGE_TASKS, Verdict, classify
from domain.requests import Limits
from domain.venue import QuoteProvider
from infra.bootstrap.gauges import GaugeSources, PoolFigures, asyncpg_figures
from infra.bootstrap.gauges import keep_fresh as gauges_kept_fresh
from infra.bootstrap.operator_view import OperatorDashboard
from infra.bootstrap.projector import ProjectorProcess, follower_for
from infra.bus import Bus, Delivery, Handler
from infra.bus.kafka_lag import consumer_lags
from infra.bus.topic_names import Topics, relay_position_name
from infra.cpu_meter import CPU, stage_of
from infra.eventstore.notification_log import ApplicationNotificationLog
from infra.eventstore.positions import PostgresPositions, leadership
from infra.eventstore.store import PostgresTrading, retry_on_conflict
from infra.metrics import METRICS
from infra.postgres.heartbeats import REBUILD, ROLES, Heartbeat
from infra.postgres.master_key import MasterKeyError
from infra.postgres.secrets_box import secret_box_for
from infra.postgres.webhooks_store import WebhookStore
from infra.settings import Settings
from infra.transient import is_transient
from infra.venue import build_venue
from infra.venue.config import VenueConfig
from projections.follower import LogFollower
from projections.queries import strategies_with_models
from projections.writer import ProjectionWriter
from workers.commands import CommandService, command_consumer
from workers.context import StageContext
from workers.credit_check import check_credit
from workers.execution import execute
from workers.pricing_lock import lock_prices
from workers.relay import OutboxRelay
from workers.scheduler import PolicyScheduler
from workers.traced import traced
from workers.webhooks import WebhookRecorder, WebhookSender

log = structlog.get_logger("infra.bootstrap.engine")
T = TypeVar("T")

CONFLICT_ATTEMPTS = 30
#: Threads for chunk checks and settlements (each holds one pooled connection meanwhile).
CHUNK_THREADS = 4
DRAIN_SECONDS = 60.0


def resolve_roles(names: Iterable[str]) -> frozenset[str]:
    roles = set()
    for name in names:
        if name == "all":
            roles |= set(ROLES)
        elif name in ROLES:
            roles.add(name)
        else:
            raise ValueError(f"unknown role {name!r}: choose from {', '.join((*ROLES, 'all'))}")
    return frozenset(roles)


def build_bus(settings: Settings, client_id: str) -> Bus:
    kafka = settings.kafka
    if kafka.bootstrap_servers:
        from infra.bus.kafka import KafkaBus

        return KafkaBus(
            kafka.bootstrap_servers,
            client_id=client_id,
            partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            connection=kafka.connection,
        )
    from infra.bus.memory import InProcessBus

    return InProcessBus()


def guarded(handler: Handler) -> Handler:
    """Stage tasks under `domain.failures.STAGE_TASKS`: a task the domain refuses (unknown
    operation, a stage it has moved past) or cannot read is logged and acknowledged, since
    retrying it could never succeed and would hold up its partition. Anything else (database
    down, a bug) propagates, so the bus redelivers the record after a back-off."""

    async def handle(delivery: Delivery) -> None:
        try:
            await handler(delivery)
        except Exception as error:
            failure = classify(error, outage=is_transient, unreadable=(ValidationError,))
            if STAGE_TASKS.verdict(failure, delivery.redelivered + 1) is not Verdict.SETTLE:
                raise
            if isinstance(error, DomainError):
                log.error(
                    "stage.refused",
                    topic=delivery.topic,
                    key=delivery.key,
                    offset=delivery.offset,
                    code=error.code,
                    reason=error.message,
                )
            else:
                log.error(
                    "stage.unreadable",
                    topic=delivery.topic,
                    offset=delivery.offset,
                    error=str(error),
                )

    return handle


class Engine:
    """Everything one process runs; `async with Engine(...)` starts and drains it."""

    def __init__(
        self,
        settings: Settings,
        database_url: str,
        roles: Iterable[str] = ("all",),
        *,
        bus: Bus | None = None,
        venue: QuoteProvider | None = None,
        chunk_size: int | None = None,
        limits: Limits | None = None,
        projections: Literal["process", "inline"] | None = None,
    ) -> None:
        """`projections`: embedded mode's read models in a child process or in a task here
        (default: the `embedded_projections` setting); with Kafka they read the bus."""
        self.settings = settings
        self.database_url = database_url
        self.roles = resolve_roles(roles)
        if not settings.kafka.bootstrap_servers and bus is None and self.roles != set(ROLES):
            raise ValueError(
                "without KAFKA_BOOTSTRAP_SERVERS the roles share an in-process bus, so one "
                "process must run them all (use 'all'), or set KAFKA_BOOTSTRAP_SERVERS"
            )
        self.bus = bus or build_bus(
            settings, client_id="strategies-" + "-".join(sorted(self.roles))
        )
        self.venue: Any = venue or build_venue(
            VenueConfig.from_section(settings.venue), factory=settings.venue_factory
        )
        self.chunk_size = chunk_size or settings.chunk_size
        self.limits = limits or settings.limits
        self.topics = Topics(settings.topic_prefix)
        self.stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._chunk_threads = ThreadPoolExecutor(CHUNK_THREADS, thread_name_prefix="chunks")
        self.kafka = bool(settings.kafka.bootstrap_servers)
        self.embedded_projections = projections or settings.embedded_projections
        self.projector: ProjectorProcess | None = None
        self.follower: LogFollower | None = None
        #: This process's database pools, for the metrics (`watch_pool` adds others).
        self.pools: dict[str, PoolFigures] = {}

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a synchronous domain call in a thread, again if a concurrent writer won.

        The budget is generous (about 20 s of jittered back-off in all) because a busy chunk
        takes half a second and several may contend for the same float account; a handler
        that still loses is redelivered by the bus.
        """
        return await self._call(None, fn, *args)

    async def call_chunk(self, fn: Callable[..., T], *args: Any) -> T:
        """`call` for the bulk work (checking and settling chunks), on threads of its own:
        with several big Operations at once their queue is long, and the light, urgent
        calls (locking prices, placing blocks before the quotes expire, the relay, the API)
        must not wait behind it (ten concurrent 10,000-trader enrollments saw 20 s waits)."""
        return await self._call(self._chunk_threads, fn, *args)

    async def _call(
        self, executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any
    ) -> T:
        def run() -> T:
            stage = stage_of(fn)
            with CPU.measure(stage), METRICS.stage_call(stage, getattr(fn, "__name__", "")) as seen:
                result = retry_on_conflict(
                    lambda: fn(*args), attempts=CONFLICT_ATTEMPTS, base_delay=0.02
                )
                seen.append(result)
                return result

        context = contextvars.copy_context()  # the log context travels, as with to_thread
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, context.run, run)

    async def start(self) -> Engine:
        self.trading = await asyncio.to_thread(
            functools.partial(
                PostgresTrading,
                self.database_url,
                chunk_size=self.chunk_size,
                limits=self.limits,
                cache_size=self.settings.aggregate_cache_size,
            )
        )
        await self.call(self.trading.ensure_default_catalogue)
        self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=8)
        self.positions = PostgresPositions(self.pool)
        self.heartbeat = Heartbeat(self.pool, self.roles)
        await self._claim_roles()
        self.webhook_sender: WebhookSender | None = None
        recorder = await self._prepare_webhooks()
        self.projections = ProjectionWriter(self.pool, notifier=recorder)
        self.commands = CommandService(self.trading, self.call, self.venue)
        self.stages = StageContext(self.trading, self.venue, self.venue, self.call)
        self.operator_view = OperatorDashboard(self.pool, self.trading, self.call)
        self._subscribe(self.stages, replace(self.stages, call=self.call_chunk))
        await self.bus.start()
        if self.webhook_sender is not None:
            await self.webhook_sender.start()
        if "projections" in self.roles and not self.kafka:
            await self._follow_log(recorder)
        if "relay" in self.roles:
            self._tasks.append(asyncio.create_task(self._relay(), name="relay"))
        if "scheduler" in self.roles:
            self._tasks.append(asyncio.create_task(self._schedule(), name="scheduler"))
        self._tasks.append(asyncio.create_task(self._gauges(), name="metrics"))
        log.info(
            "engine.started",
            roles=sorted(self.roles),
            kafka=bool(self.settings.kafka.bootstrap_servers),
        )
        return self

    def watch_pool(self, name: str, pool: asyncpg.Pool) -> None:
        """Count `pool`'s connections in the metrics too (the API's own pool, say)."""
        self.pools[name] = asyncpg_figures(pool)

    async def _gauges(self) -> None:
        self.pools["engine"] = asyncpg_figures(self.pool)
        self.pools["event_store"] = self.trading.pool_connections
        group_consumers = getattr(self.bus, "group_consumers", None)
        sources = GaugeSources(
            self.pool,
            self.trading,
            self.call,
            relay_position_name(self.topics),
            consumer_lags=(
                None if group_consumers is None else lambda: consumer_lags(group_consumers())
            ),
            pools=self.pools,
        )
        await gauges_kept_fresh(self.stop_event, sources)

    async def _follow_log(self, recorder: WebhookRecorder) -> None:
        """Embedded mode's read models: a child process following the log, or a task here."""
        if self.embedded_projections == "process":
            self.projector = ProjectorProcess(self.settings, self.database_url)
            await self.projector.start()
            return
        self.follower = follower_for(
            self.pool, self.trading, recorder, lambda: self.heartbeat.progress("projections")
        )
        self._tasks.append(asyncio.create_task(self.follower.run(self.stop_event), name="follow"))

    async def _claim_roles(self) -> None:
        """Announce this process's roles (/health shows them). Projecting into the live read
        models while `projections rebuild` rebuilds them would corrupt them: wait for it."""
        unless = REBUILD if "projections" in self.roles else None
        while blockers := await self.heartbeat.start(unless=unless):
            log.warning(
                "engine.waiting_for_projections_rebuild",
                processes=[f"{b.host}:{b.pid}" for b in blockers],
            )
            await asyncio.sleep(self.heartbeat.interval)

    async def _prepare_webhooks(self) -> WebhookRecorder:
        """The `projections` role records the notifications (in its own transactions), the
        `webhooks` role sends them; sending needs the master key, recording does not."""
        box = None
        if "webhooks" in self.roles:
            try:
                box = secret_box_for(self.settings)
            except MasterKeyError as missing:  # recorded anyway; sent where the key is
                log.warning("webhooks.sender_disabled", reason=str(missing))
        store = WebhookStore(self.pool, box)
        if box is not None:
            self.webhook_sender = WebhookSender(
                store,
                on_attempt=lambda: self.heartbeat.progress("webhooks"),
                allow_private=self.settings.webhook_allow_private,
            )
        return WebhookRecorder(
            store, on_recorded=self.webhook_sender.poke if self.webhook_sender else None
        )

    def _subscribe(self, urgent: StageContext, bulk: StageContext) -> None:
        topics = self.topics

        tracked = self.heartbeat.tracked

        def bind(
            role: str,
            handler: Callable[[Delivery, StageContext], Awaitable[None]],
            ctx: StageContext,
            stage: str | None = None,
        ) -> Handler:
            task = guarded(lambda delivery: handler(delivery, ctx))
            return tracked(role, traced(stage or role, task))

        if "credit-check" in self.roles:
            check = bind("credit-check", check_credit, bulk)
            self.bus.subscribe(topics.credit_check, topics.group("credit-check"), check)
        if "pricing" in self.roles:
            lock = bind("pricing", lock_prices, urgent)
            self.bus.subscribe(topics.pricing, topics.group("pricing"), lock)
        if "execution" in self.roles:
            settle = bind("execution", execute, bulk)
            self.bus.subscribe(topics.execution, topics.group("execution"), settle)
            # Its own lane: placing blocks must not queue behind chunk settlements, or the
            # locked quotes expire (seen with ten 10,000-trader enrollments at once).
            place = bind("execution", execute, urgent, "blocks")
            self.bus.subscribe(topics.blocks, topics.group("blocks"), place)
        if "commands" in self.roles:
            consume = tracked("commands", command_consumer(self.commands, self.bus, topics))
            self.bus.subscribe(topics.commands, topics.group("commands"), consume)
        # The read models take runs of a partition's records: one transaction per run instead
        # of per event (the read side's main cost), which also records the webhooks. Embedded
        # mode's follow the log instead (`_follow_log`).
        if "projections" in self.roles and self.kafka:
            project = tracked("projections", self.projections.handle_many)
            self.bus.subscribe_batch(topics.events, topics.group("read-models"), project)

    async def _relay(self) -> None:
        """Relay while holding the leadership; when the lock's session is lost, stop at
        once (a standby may be leading already) and queue up for it again."""
        while not self.stop_event.is_set():
            lost = asyncio.Event()
            stopping = asyncio.create_task(self._forward(self.stop_event, lost))
            try:
                async with leadership(
                    self.pool, relay_position_name(self.topics), self.stop_event, lost=lost
                ) as leading:
                    if leading:
                        log_reader = ApplicationNotificationLog(self.trading)
                        self.relay = OutboxRelay(
                            log_reader,
                            self.bus,
                            self.positions,
                            name=relay_position_name(self.topics),
                            topics=self.topics,
                            # a bus that keeps nothing across a restart: save only once
                            # delivered
                            delivered=getattr(self.bus, "idle", None),
                            publish_events=self._events_read(),
                            on_published=lambda _: self.heartbeat.progress("relay"),
                            traces=log_reader.first_state,
                        )
                        await self.relay.run(lost)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("relay.leadership_failed", error=repr(error))
                await asyncio.sleep(1.0)
            finally:
                stopping.cancel()

    async def readiness(self) -> str:
        """Why this process is not ready to take work, "" when it is: its database answers
        within 2 s and, on Kafka, each of its subscriptions holds a partition."""
        try:
            async with self.pool.acquire(timeout=2.0) as connection:
                await asyncio.wait_for(connection.fetchval("SELECT 1"), 2.0)
        except Exception as error:  # any failure to answer is "not ready", with its type
            return f"the database does not answer: {type(error).__name__}"
        unassigned = getattr(self.bus, "unassigned", None)
        waiting = unassigned() if unassigned is not None else []
        if waiting:
            return "no partition assigned yet: " + ", ".join(waiting)
        return ""

    async def _schedule(self) -> None:
        """Run the policy scheduler while holding its leadership (one leader in the
        cluster, like the relay's); a standby takes over when the leader's session ends."""
        scheduler = PolicyScheduler(
            self.trading,
            self.venue,
            self.commands,
            self.call,
            lambda: strategies_with_models(self.pool),
            interval=self.settings.scheduler_interval_s,
            on_tick=lambda: self.heartbeat.progress("scheduler"),
        )
        name = f"{self.settings.topic_prefix}.scheduler"
        while not self.stop_event.is_set():
            lost = asyncio.Event()
            stopping = asyncio.create_task(self._forward(self.stop_event, lost))
            try:
                async with leadership(self.pool, name, self.stop_event, lost=lost) as leading:
                    if leading:
                        await scheduler.run(lost)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("scheduler.leadership_failed", error=repr(error))
                await asyncio.sleep(1.0)
            finally:
                stopping.cancel()

    def _events_read(self) -> bool:
        """Whether anyone reads the events topic: always on Kafka (other processes); on the
        in-process bus only a group subscribed here (embedded read models follow the log),
        so the relay does not build records nobody would take."""
        readers = getattr(self.bus, "has_readers", None)
        return readers is None or bool(readers(self.topics.events))

    @staticmethod
    async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
        await source.wait()
        target.set()

    async def drain(self) -> bool:
        """In embedded mode, let the in-process bus deliver everything the store holds and
        the read models (with the webhooks they record) catch up before stopping; True when
        they did."""
        idle = getattr(self.bus, "idle", None)
        relay = getattr(self, "relay", None)
        if idle is None or relay is None:
            return True
        deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
        notifications = ApplicationNotificationLog(self.trading)
        while asyncio.get_running_loop().time() < deadline:
            # Not "position >= the newest id": ids are not in log order, and a committed
            # event behind an older transaction still in flight is not readable yet.
            unpublished = await asyncio.to_thread(notifications.unpublished, relay.position, 1)
            if not unpublished and idle() and await self._projected(notifications):
                return True
            await asyncio.sleep(0.05)
        log.warning("engine.drain_incomplete", position=relay.position)
        return False

    async def _projected(self, notifications: ApplicationNotificationLog) -> bool:
        """Whether embedded mode's read models have applied the whole log."""
        if self.follower is not None:
            position = self.follower.position
        elif self.projector is not None:
            position = await ProjectionWriter(self.pool).log_position()
        else:
            return True
        return not await asyncio.to_thread(notifications.unpublished, position, 1)

    async def stop(self) -> None:
        """Graceful: deliver what the in-process bus still holds, stop the relay, drain
        in-flight handlers, then close the connections."""
        await self.drain()
        self.stop_event.set()
        if self.webhook_sender is not None:
            await self.webhook_sender.stop()
        for task in self._tasks:
            await task
        if self.projector is not None:
            await self.projector.stop()
        await self.bus.stop()
        await self.heartbeat.stop()
        await self.pool.close()
        self._chunk_threads.shutdown(wait=True)
        await asyncio.to_thread(self.trading.close)
        log.info("engine.stopped")

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
