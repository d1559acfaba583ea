"""The policy scheduler: every Strategy's model reviewed and policy run, once per period.

One process leads at a time (the composition root holds the leadership lock, like the
relay's); a standby takes over when the leader's session ends. Each tick:
1. reviews every Strategy with a model against the catalogue (`Trading.review_models`: a
   halted or disabled instrument puts it in `needs_adjustment`, enabled again makes it
   `active`);
2. for each Strategy whose calendar has a period due, asks the venue for indicative prices
   and submits a `RunPolicy` command through the same command service as HTTP and the
   command topic. Its request id is derived from the Strategy and the period, and the
   Strategy records each period's run in the same write as the rebalance it starts: a
   scheduler restarted mid-period, or two that both believe they lead, meet the first run
   as a replay or a refusal, never run a period twice.

What a run decides (who drifted, who cooled down) is the domain's (`domain/policy_run.py`),
from the store's state when the command runs, not from a read model. The read model only
says which Strategies have a model, so a Strategy made a moment ago waits a tick or two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from domain import ids
from domain.commands import RunPolicy
from domain.errors import DomainError
from domain.failures import Failure, classify
from domain.services import Trading
from domain.statuses import StrategyStatus
from domain.strategy import Strategy
from domain.venue import QuoteProvider
from infra.logging import get_logger
from infra.tracing import handling
from infra.transient import is_transient
from workers.commands import CommandService

log = get_logger("workers.scheduler")

#: Seconds between two ticks by default (STRATEGIES_SCHEDULER_INTERVAL_S).
DEFAULT_INTERVAL = 30.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TickOutcome:
    """What one Strategy's turn of a tick did: `ran` (a rebalance requested), `nothing`
    (the period recorded, nobody to rebalance), `replayed` (the period had run),
    `refused` (with the domain's code), `failed` (an unexpected error, logged; the next
    tick tries again) or `skipped` (not due, paused, no calendar...)."""

    strategy_id: UUID
    outcome: str
    period: str | None = None
    operation_id: str | None = None
    detail: str = ""


class PolicyScheduler:
    def __init__(
        self,
        trading: Trading,
        quotes: QuoteProvider,
        commands: CommandService,
        call: Callable[..., Awaitable[Any]],
        list_strategies: Callable[[], Awaitable[Sequence[UUID]]],
        *,
        clock: Callable[[], datetime] = utc_now,
        interval: float = DEFAULT_INTERVAL,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.trading = trading
        self.quotes = quotes
        self.commands = commands
        self.call = call
        self.list_strategies = list_strategies
        self.clock = clock
        self.interval = interval
        self.on_tick = on_tick

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until `stop` is set; a tick that fails on an outage is logged and retried at
        the next one (nothing of a failed tick is half-written: each run is one write)."""
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as error:  # an outage, or a bug: the next tick tries again
                log.warning("scheduler.tick_failed", error=repr(error))
            if self.on_tick is not None:
                self.on_tick()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                continue

    async def tick(self) -> list[TickOutcome]:
        strategy_ids = list(await self.list_strategies())
        changed: list[Strategy] = await self.call(self.trading.review_models, strategy_ids)
        for strategy in changed:
            log.warning(
                "scheduler.strategy_status_changed",
                strategy_id=str(strategy.id),
                status=strategy.status.value,
                assets=strategy.broken_assets,
            )
        outcomes = []
        for strategy_id in strategy_ids:
            try:
                outcome = await self._turn(strategy_id)
            except Exception as error:  # one Strategy's failure costs its own turn only
                if is_transient(error):
                    raise
                log.exception("scheduler.turn_failed", strategy_id=str(strategy_id))
                outcome = TickOutcome(strategy_id, "failed", detail=repr(error)[:200])
            if outcome.outcome != "skipped":
                log.info(
                    "scheduler.policy_run",
                    strategy_id=str(strategy_id),
                    outcome=outcome.outcome,
                    period=outcome.period,
                    operation_id=outcome.operation_id,
                    detail=outcome.detail,
                )
            outcomes.append(outcome)
        return outcomes

    async def _turn(self, strategy_id: UUID) -> TickOutcome:
        strategy = await self.call(self.trading.find, strategy_id, Strategy)
        policy = None if strategy is None else strategy.policy
        if strategy is None or policy is None or policy.calendar is None or not strategy.model:
            return TickOutcome(strategy_id, "skipped", detail="no calendar")
        now = self.clock()
        since = strategy.policy_since or strategy.created_on
        due = policy.calendar.due(now, strategy.last_policy_period, since)
        if due is None:
            return TickOutcome(strategy_id, "skipped", detail="not due")
        if strategy.status is StrategyStatus.NEEDS_ADJUSTMENT:
            return TickOutcome(strategy_id, "skipped", due.key, detail="needs adjustment")
        prices = await self._prices(strategy)
        command = RunPolicy(strategy.id, due.key, strategy.policy_version, prices, now)
        request_id = ids.policy_run_request_id(strategy.id, due.key)
        # Its own trace and correlation id (the run's request id), which the rebalance it
        # may request carries through its stages, as a request's would.
        about = {"strategies.strategy_id": str(strategy.id), "strategies.period": due.key}
        try:
            with handling({}, "policy-run", fallback_id=str(request_id), attributes=about):
                kind, resource, created = await self.commands.run(
                    strategy.platform_id, request_id, command
                )
        except DomainError as error:
            if classify(error, outage=is_transient) is not Failure.REFUSED:
                raise
            return TickOutcome(strategy_id, "refused", due.key, detail=error.code)
        operation_id = resource["id"] if kind == "operation" else None
        outcome = "replayed" if not created else "ran" if operation_id else "nothing"
        return TickOutcome(strategy_id, outcome, due.key, operation_id)

    async def _prices(self, strategy: Strategy) -> dict[str, Decimal]:
        """Indicative prices of every instrument listed in the Strategy's currency: a
        Trader may still hold an asset an earlier model had."""
        catalogue = await self.call(self.trading.catalogue)
        assets = sorted(
            {
                asset
                for asset, currency in catalogue.instruments
                if currency == strategy.quoted_currency
            }
        )
        return dict(await self.quotes.indicative(strategy.quoted_currency, assets))
