"""Webhooks (spec §8, §11.20): turn domain events into notifications and send them.

`WebhookRecorder` rides on the read-model writer (the `projections` role): the transaction
that folds a run of events also records one delivery row per notification and matching
subscription, each payload being the object exactly as its event left it. So a receiver is
never told of a state the API cannot show yet, nothing is folded twice (the webhooks once
kept a private copy of the read models, which cost as much as the read models themselves),
and a redelivered event, which changes no row, notifies nothing twice. A chunk's rejections
whose platform is not known yet raise: the bus redelivers later.

`WebhookSender` sends in the background, one loop per active subscription, so a slow or
dead receiver holds up neither the event consumer nor the other subscriptions. Due rows
come from the table (a restart resumes them), claimed under a lease
(`infra.postgres.webhooks_store`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid5

import httpx
import structlog

from infra.bus.messages import DomainEventMessage
from infra.metrics import METRICS
from infra.webhook_targets import Resolver, TargetRefusedError, destination, system_resolver
from projections.executions import ExecutionRow
from projections.operations import OperationRow
from projections.poisoned import NotAppliedYetError
from projections.queries import (
    execution_resource,
    operation_resource,
    strategy_resource,
    trader_resource,
)
from projections.strategies import StrategyRow
from projections.traders import PENDING, TRADERS, TraderRow, is_visible
from projections.writer import Observation, Projection

if TYPE_CHECKING:
    from collections.abc import Callable

    from infra.postgres.webhooks_store import DueDelivery, NewDelivery, Subscription, WebhookStore

log = structlog.get_logger("workers.webhooks")

OPERATION_CHANGED = "trade_strategy.operation.status_changed"
EXECUTION_CHANGED = "trade_strategy.execution.status_changed"
TRADER_CREATED = "trade_strategy.trader.created"
#: Extension (issue 18): a Strategy's model can no longer be traded, or can again.
STRATEGY_CHANGED = "trade_strategy.strategy.status_changed"
OPERATION_EVENTS = frozenset({"Operation.Requested", "Operation.StatusChanged"})
EXECUTION_EVENTS = frozenset(
    {"Trader.HoldPlaced", "Trader.Settled", "Trader.HoldReleased", "OperationChunk.Checked"}
)


class PlatformNotKnownYetError(NotAppliedYetError):
    """Raised when an Execution names no platform and its Operation is not in the read
    models yet: not the event's fault, so the bus retries it instead of poisoning it."""


@dataclass(frozen=True)
class Notice:
    """One notification an event makes, before it is matched to subscriptions."""

    platform_id: str
    payload_type: str
    object_id: UUID
    payload: dict[str, Any]


@dataclass(frozen=True)
class RetryPolicy:
    """After a failure: `quick` retries `quick_interval` apart, then `backoff` more from
    `backoff_initial` doubling, then dead letter (§11.20). Any 2xx is success."""

    quick: int = 4
    quick_interval: float = 0.25
    backoff: int = 3
    backoff_initial: float = 1.0
    timeout: float = 5.0

    def retry_in(self, failed_in_round: int) -> float | None:
        """Seconds until the next attempt after `failed_in_round` failures, None when spent."""
        if failed_in_round <= self.quick:
            return self.quick_interval
        step = failed_in_round - self.quick
        return self.backoff_initial * 2 ** (step - 1) if step <= self.backoff else None


# -- signing ------------------------------------------------------------------------------
def signed_headers(
    secret: str, body: bytes, payload_type: str, notification_id: UUID, *, legacy: bool, now_ms: int
) -> dict[str, str]:
    """The headers of one attempt; `x-zh-hook-signature-v2` covers timestamp and body."""
    timestamp = str(now_ms)
    v2 = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    headers = {
        "content-type": "application/json",
        "x-zh-hook-notification-id": str(notification_id),
        "x-zh-hook-payload-type": payload_type,
        "x-zh-hook-timestamp": timestamp,
        "x-zh-hook-signature-v2": v2.hexdigest(),
    }
    if legacy:
        body_only = hmac.new(secret.encode(), body, hashlib.sha256)
        headers["x-zh-hook-signature-256"] = body_only.hexdigest()
    return headers


def notification_id(subscription_id: UUID, position: int, payload_type: str, obj: UUID) -> UUID:
    """Stable per (subscription, event, payload type, object): a chunk's check can reject
    several Executions in one event, so the object is part of it."""
    return uuid5(subscription_id, f"{position}:{payload_type}:{obj}")


# -- which notices an event makes ----------------------------------------------------------
def notices(event: DomainEventMessage, state: Projection) -> list[Notice]:
    """The notices of `event`, the last one `state` applied, from the rows it changed."""
    found: list[Notice] = []
    before = state.last_before
    for key, row in state.last_changed.items():
        if isinstance(row, OperationRow) and event.type in OPERATION_EVENTS:
            found.append(
                Notice(row.platform_id, OPERATION_CHANGED, row.id, operation_resource(row))
            )
        elif isinstance(row, ExecutionRow) and event.type in EXECUTION_EVENTS:
            platform = row.platform_id or _operation_platform(state, row.operation_id)
            payload = execution_resource(row, trader_visible=_trader_visible(state, row))
            found.append(Notice(platform, EXECUTION_CHANGED, row.id, payload))
        elif isinstance(row, StrategyRow) and event.type == "Strategy.StatusChanged":
            found.append(Notice(row.platform_id, STRATEGY_CHANGED, row.id, strategy_resource(row)))
        elif isinstance(row, TraderRow) and event.type == "Trader.Settled":
            was = before.get(key)
            if isinstance(was, TraderRow) and was.status == PENDING and row.status != PENDING:
                found.append(Notice(row.platform_id, TRADER_CREATED, row.id, trader_resource(row)))
    return found


def _trader_visible(state: Projection, row: ExecutionRow) -> bool:
    """As the queries decide it: a Trader not in the read models yet, or still pending, is
    not named (the writer loads every Trader an Execution event names)."""
    trader = state.get((TRADERS.name, row.trader_id)) if row.trader_id else None
    return isinstance(trader, TraderRow) and is_visible(trader.status)


def _operation_platform(state: Projection, operation_id: UUID) -> str:
    operation = state.get(("operations", operation_id))
    if not isinstance(operation, OperationRow):
        raise PlatformNotKnownYetError(f"operation {operation_id} not folded yet")
    return operation.platform_id


class WebhookRecorder:
    """The read-model writer's `Notifier`: each transaction that folds events also records
    one delivery row per notification and subscription that wants it."""

    def __init__(self, store: WebhookStore, *, on_recorded: Callable[[], None] | None = None):
        self.store = store
        self.on_recorded = on_recorded

    async def begin(self, connection: Any) -> WebhookObservation:
        # Read in the transaction: a subscription added meanwhile starts with the next one.
        return WebhookObservation(self.store, await self.store.active(connection=connection))

    def committed(self, observation: Observation) -> None:
        assert isinstance(observation, WebhookObservation)
        if observation.recorded:
            log.info("webhooks.recorded", count=observation.recorded)
            if self.on_recorded is not None:
                self.on_recorded()


class WebhookObservation:
    def __init__(self, store: WebhookStore, subscriptions: list[Subscription]) -> None:
        self.store = store
        self.subscriptions = subscriptions
        self.made: list[tuple[DomainEventMessage, Notice]] = []
        self.recorded = 0

    def observe(self, event: DomainEventMessage, state: Projection) -> None:
        if self.subscriptions:  # payloads cost more than the fold: build them only if wanted
            self.made.extend((event, notice) for notice in notices(event, state))

    async def finish(self, connection: Any) -> None:
        rows = _deliveries(self.subscriptions, self.made)
        await self.store.record(connection, rows)
        self.recorded = len(rows)


def _deliveries(
    subscriptions: list[Subscription], made: list[tuple[DomainEventMessage, Notice]]
) -> list[NewDelivery]:
    """One delivery row per notice and active subscription that wants it."""
    from infra.postgres.webhooks_store import NewDelivery

    rows = []
    for event, notice in made:
        wanted = [
            sub
            for sub in subscriptions
            if sub.platform_id == notice.platform_id
            and notice.payload_type in sub.payload_types
            and event.timestamp >= sub.created_at  # a replayed history is not news to it
        ]
        if not wanted:
            continue
        body = json.dumps(notice.payload, separators=(",", ":"))
        for sub in wanted:
            nid = notification_id(sub.id, event.position, notice.payload_type, notice.object_id)
            rows.append(
                NewDelivery(
                    nid, sub.id, sub.platform_id, notice.payload_type, event.position,
                    notice.object_id, body,
                )
            )  # fmt: skip
    return rows


class WebhookSender:
    """Background sending: `await sender.start()`, `sender.poke()` on news, `await stop()`."""

    def __init__(
        self,
        store: WebhookStore,
        policy: RetryPolicy | None = None,
        *,
        poll_interval: float = 0.5,
        concurrency: int = 8,
        on_attempt: Callable[[], None] | None = None,
        allow_private: bool = False,
        resolve: Resolver = system_resolver,
    ) -> None:
        """`on_attempt`: called after every delivery attempt (the process's progress).
        `allow_private`: send to http and non-public addresses too (development only);
        `resolve`: how a host's addresses are found (the system's resolver)."""
        self.store = store
        self.on_attempt = on_attempt
        self.allow_private = allow_private
        self.resolve = resolve
        self.policy = policy or RetryPolicy()
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self._loops: dict[UUID, asyncio.Task[None]] = {}
        self._wake: dict[UUID, asyncio.Event] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="webhooks-supervisor")

    async def stop(self) -> None:
        """Let every loop finish the attempts it has started (each bounded by the policy's
        timeout) and leave. Not task.cancel(): an asyncpg query cancelled in flight waits
        for the server's answer to the cancellation, which a stuck database never gives."""
        self._stopping.set()
        self.poke()
        tasks = [t for t in (self._supervisor, *self._loops.values()) if t is not None]
        for task in tasks:
            with contextlib.suppress(Exception):
                await task
        self._loops.clear()

    def poke(self) -> None:
        """Something was recorded or redelivered: every loop looks for due rows now."""
        for wake in self._wake.values():
            wake.set()

    async def _supervise(self) -> None:
        """Keep one loop per active subscription (new ones start, removed ones stop)."""
        while True:
            try:
                active = {s.id: s for s in await self.store.active()}
            except Exception as error:  # database blip: keep the loops, look again shortly
                log.warning("webhooks.supervise_failed", error=repr(error))
                active = None
            if active is not None and not self._stopping.is_set():
                for gone in set(self._loops) - set(active):
                    self._loops.pop(gone).cancel()
                    self._wake.pop(gone, None)
                for sub_id, sub in active.items():
                    if sub_id not in self._loops or self._loops[sub_id].done():
                        self._wake[sub_id] = asyncio.Event()
                        self._loops[sub_id] = asyncio.create_task(self._loop(sub))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.poll_interval)
            if self._stopping.is_set():
                return

    async def _loop(self, sub: Subscription) -> None:
        # A client per subscription: requests go to an address with the name in Host and
        # SNI, and a pool shared by subscriptions could carry one name's request over a TLS
        # connection made for another name at the same address. No proxy from the
        # environment (it would connect to the name itself) and no redirects (a 3xx could
        # point anywhere): both would bypass the address check.
        async with httpx.AsyncClient(
            timeout=self.policy.timeout, trust_env=False, follow_redirects=False
        ) as client:
            await self._deliver(sub, client)

    async def _deliver(self, sub: Subscription, client: httpx.AsyncClient) -> None:
        secret = await self.store.secret(sub.id)
        wake = self._wake[sub.id]
        lease = self.policy.timeout + 30
        while not self._stopping.is_set():
            try:
                due = await self.store.claim(sub.id, self.concurrency, lease)
                await asyncio.gather(*(self._attempt(sub, client, secret, d) for d in due))
            except Exception as error:  # the database went away: try again after a pause
                log.warning("webhooks.loop_failed", subscription_id=str(sub.id), error=repr(error))
                due = []
            if not due:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.poll_interval)
                wake.clear()

    async def _attempt(
        self, sub: Subscription, client: httpx.AsyncClient, secret: str, due: DueDelivery
    ) -> None:
        await self._send(sub, client, secret, due)
        if self.on_attempt is not None:
            self.on_attempt()

    async def _send(
        self, sub: Subscription, client: httpx.AsyncClient, secret: str, due: DueDelivery
    ) -> None:
        body = due.body.encode()
        headers = signed_headers(
            secret,
            body,
            due.payload_type,
            due.id,
            legacy=sub.legacy_headers,
            now_ms=time.time_ns() // 1_000_000,
        )
        started = time.monotonic()
        code: int | None = None
        try:
            target = await destination(
                sub.url, allow_private=self.allow_private, resolve=self.resolve
            )
            response = await client.post(
                target.url,
                content=body,
                headers={**headers, **target.headers},
                extensions=target.extensions,
            )
            code = response.status_code
            error = "" if 200 <= code < 300 else f"HTTP {code}"
        except TargetRefusedError as refused:  # nothing was sent: no status, no probe
            error = f"refused: {refused}"
        except httpx.TimeoutException:
            error = f"timeout after {self.policy.timeout}s"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        latency = round((time.monotonic() - started) * 1000)
        if not error and code is not None:
            METRICS.webhook_attempts.labels("delivered").inc()
            await self.store.delivered(due.id, code, latency)
            log.info("webhooks.delivered", notification_id=str(due.id), status=code)
            return
        retry_in = self.policy.retry_in(due.round_attempts + 1)
        # Counted as soon as known, so the count never trails what the table shows.
        METRICS.webhook_attempts.labels("retry" if retry_in is not None else "dead").inc()
        await self.store.failed(due.id, code, error, latency, retry_in)
        log.warning(
            "webhooks.attempt_failed",
            notification_id=str(due.id),
            error=error,
            retry_in=retry_in,
            dead=retry_in is None,
        )
