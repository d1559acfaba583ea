"""Trading: the synchronous application service every adapter calls (HTTP, Kafka, CLI).

Commands validate everything before writing and write each step in one atomic `save`, so a
crash never leaves half a step. Ids derive from (platform, request id), so a replayed
request finds what it made (and a reused id with another body is refused).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate

from domain import ids
from domain.allocations import Allocations, parse_allocations
from domain.allotment import AllottedChunks
from domain.catalogue import DEFAULT_INSTRUMENTS, Instrument, InstrumentCatalogue, fiat_precision
from domain.checking import approved_entry, check_orders
from domain.chunk import OperationChunk
from domain.codes import check_assets, check_participant_code, check_platform_id, check_reference
from domain.commands import (
    CancelOperation,
    Command,
    CreateStrategy,
    OperationCommand,
    RunPolicy,
    SetModel,
    SetPolicy,
    UpdateTrader,
    operation_command,
)
from domain.credit import CreditCheck
from domain.eligibility import ParticipantStatus
from domain.errors import (
    FieldError,
    IdempotencyConflictError,
    InvalidRequestError,
    ModelRequiredError,
    OperationNotFoundError,
    PolicyRunNotDueError,
    StrategyNeedsAdjustmentError,
    StrategyNotFoundError,
    TraderNotFoundError,
)
from domain.float_account import FloatAccount, FloatDeposit
from domain.money import ZERO, exact_methods
from domain.operation import Operation
from domain.policy import parse_policy
from domain.policy_run import RunSelection, TraderState, price_evidence, select_for_run
from domain.preview import CheckedChunk, OperationPreview, PreviewTerms, preview_of
from domain.reference import Catalogue, Participant
from domain.request_key import RequestKey
from domain.request_trace import UNTRACED, RequestTrace
from domain.requesting import plan_operation
from domain.requests import Limits
from domain.roster import RosterEntry, in_scope, needs_scope, roster_changes
from domain.stages import OperationStages, operation_terms
from domain.statuses import OperationType, StrategyStatus, TraderStatus
from domain.strategy import Strategy
from domain.trader import Trader

A = TypeVar("A", bound=Aggregate)
DEFAULT_CHUNK_SIZE = 500
#: Levels of objects and lists a Strategy's metadata may nest (labels, not documents).
MAX_METADATA_DEPTH = 32
#: A Strategy's metadata, serialised as compact UTF-8 JSON, at most (labels, not documents:
#: 4 MiB of it per Strategy made one list page 68 MB).
MAX_METADATA_BYTES = 16 * 1024
#: The request id a preview's unsaved Operation is derived from: never a request's (an
#: X-REQUEST-ID is a UUID v4), so a Trader held by any Operation is held by another.
PREVIEW_REQUEST_ID = UUID(int=0)


@exact_methods
class Trading(OperationStages, Application[UUID]):
    name = "Trading"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {
        Trader: 25,
        Operation: 50,
        FloatAccount: 100,
        Catalogue: 50,
        # A daily policy adds a run a day, and every Operation request loads its Strategy.
        Strategy: 50,
    }

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        limits: Limits | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(env)
        self.limits = limits or Limits()
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self.chunk_size = chunk_size
        #: The roster of this process's saves; a persistent store keeps it with the events.
        self._roster: dict[UUID, RosterEntry] = {}
        self.allotted_chunks = AllottedChunks()

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """eventsourcing's save, with the roster entries the save changes passed along to the
        recorder (as `roster=`), so a store can write them in the events' own transaction."""
        entries = roster_changes(objs)
        if entries:
            kwargs["roster"] = entries
        recordings = self._save(objs, kwargs)
        self._roster_saved(entries)
        return recordings

    def _save(self, objs: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """`Application.save` with aggregates told apart by class: its own test, an isinstance
        against a runtime-checkable Protocol per object, cost more than the insert."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        others = []
        for obj in objs:
            if isinstance(obj, Aggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                others.append(obj)
        processing_event.collect_events(*others, **kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def _roster_saved(self, entries: Sequence[RosterEntry]) -> None:
        for entry in entries:
            self._roster[entry.trader_id] = entry

    def scope(self, strategy_id: UUID, *, auto_rebalance_only: bool) -> list[str]:
        """The Strategy's Traders a request naming nobody applies to, including every
        write already made (read-your-writes: never from a read model that may lag)."""
        return in_scope(self._roster, strategy_id, auto_rebalance_only=auto_rebalance_only)

    # -- loading ------------------------------------------------------------------------
    def get_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]:
        """Load several aggregates; missing ones are absent. Infra overrides it with one query."""
        found: dict[UUID, Any] = {}
        for aggregate_id in aggregate_ids:
            try:
                found[aggregate_id] = self.repository.get(aggregate_id)
            except AggregateNotFoundError:
                continue
        return found

    def find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        try:
            aggregate: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, kind) else None

    # -- reference data -----------------------------------------------------------------
    def catalogue(self) -> InstrumentCatalogue:
        catalogue = self.find(ids.CATALOGUE_ID, Catalogue)
        return catalogue.view() if catalogue else InstrumentCatalogue()

    def list_instruments(self, instruments: Iterable[Instrument]) -> InstrumentCatalogue:
        """List or change instruments. The catalogue starts with the defaults whichever call
        creates it: a first `instruments set LINK USD` must not leave LINK/USD listed alone
        (every BTC/ETH/SOL request would then fail as not listed)."""
        catalogue = self.find(ids.CATALOGUE_ID, Catalogue)
        if catalogue is None:
            catalogue = Catalogue()
            instruments = [*DEFAULT_INSTRUMENTS, *instruments]
        for instrument in instruments:
            catalogue.list_instrument(instrument)
        if catalogue.pending_events:
            self.save(catalogue)
        return catalogue.view()

    def ensure_default_catalogue(self) -> InstrumentCatalogue:
        return self.list_instruments(())

    def register_participants(
        self,
        platform_id: str,
        codes: Iterable[str],
        status: ParticipantStatus = ParticipantStatus.ACTIVE,
        restricted_assets: Sequence[str] = (),
    ) -> int:
        """Register or update participants' eligibility; returns how many changed."""
        check_platform_id(platform_id)
        codes = list(dict.fromkeys(codes))
        for index, code in enumerate(codes):
            check_participant_code(code, f"participants[{index}].participant_code")
        restricted = check_assets(restricted_assets, "restricted_assets")
        existing = self.get_many([ids.participant_id(platform_id, c) for c in codes])
        changed = []
        for code in codes:
            participant = existing.get(ids.participant_id(platform_id, code))
            if participant is None:
                participant = Participant(platform_id, code, status.value, restricted)
            else:
                participant.update(status, restricted)
            if participant.pending_events:
                changed.append(participant)
        self.save(*changed)
        return len(changed)

    def deposit_float(
        self, platform_id: str, currency: str, amount: Decimal, reference: str
    ) -> tuple[FloatAccount, bool]:
        """Credit the float once per `reference`: the account, and whether this call credited
        it (False on a replay of the same deposit; another amount is a conflict)."""
        check_platform_id(platform_id)
        check_reference(reference)
        account_id = ids.float_account_id(platform_id, currency)
        key_id = ids.float_deposit_id(platform_id, currency, reference)
        found = self.get_many([account_id, key_id])
        earlier = found.get(key_id)
        if isinstance(earlier, FloatDeposit):
            earlier.replay(amount)
            return found[account_id], False
        account = found.get(account_id) or FloatAccount(
            platform_id, currency, fiat_precision(currency)
        )
        account.deposit(amount, reference)
        self.save(account, FloatDeposit(platform_id, currency, reference, amount))
        return account, True

    def _float(self, platform_id: str, currency: str) -> FloatAccount:
        found = self.find(ids.float_account_id(platform_id, currency), FloatAccount)
        return found or FloatAccount(platform_id, currency, fiat_precision(currency))

    # -- commands -----------------------------------------------------------------------
    def handle(
        self, platform_id: str, request_id: UUID, command: Command, trace: RequestTrace = UNTRACED
    ) -> tuple[Any, bool]:
        """Run one command for a platform: what it made or changed (a Strategy, an Operation
        or a Trader), and whether this call did (False on a replay of the same request).
        `trace` is recorded on an Operation it requests, for the logs and traces only."""
        check_platform_id(platform_id)
        fingerprint = command.fingerprint()
        earlier = self._claimed(platform_id, request_id, fingerprint)
        if earlier is not None:
            return earlier, False
        if isinstance(command, CreateStrategy):
            return self._create_strategy(platform_id, request_id, command, fingerprint), True
        if isinstance(command, UpdateTrader):
            return self._update_trader(platform_id, request_id, command, fingerprint), True
        if isinstance(command, SetModel):
            return self._set_model(platform_id, request_id, command, fingerprint), True
        if isinstance(command, SetPolicy):
            return self._set_policy(platform_id, request_id, command, fingerprint), True
        if isinstance(command, RunPolicy):
            return self._run_policy(platform_id, request_id, command, fingerprint, trace), True
        if isinstance(command, CancelOperation):
            return self._cancel(platform_id, request_id, command, fingerprint), True
        made = self._request_operation(platform_id, request_id, command, fingerprint, trace)
        return made, True

    def create_strategy(
        self, platform_id: str, request_id: UUID, body: Mapping[str, Any]
    ) -> tuple[Strategy, bool]:
        """Returns the Strategy and whether this call created it (False on a replay)."""
        strategy, created = self.handle(platform_id, request_id, CreateStrategy(body))
        return strategy, created

    def request_operation(
        self,
        platform_id: str,
        strategy_id: UUID,
        request_id: UUID,
        kind: OperationType,
        body: Mapping[str, Any],
    ) -> tuple[Operation, bool]:
        """`handle` for the Operation request of `kind`."""
        command = operation_command(kind, strategy_id, body)
        operation, created = self.handle(platform_id, request_id, command)
        return operation, created

    def set_model(
        self, platform_id: str, request_id: UUID, strategy_id: UUID, body: Mapping[str, Any]
    ) -> tuple[Strategy, bool]:
        """PUT the Strategy's model: its next version (a replay answers the Strategy as it is
        now, whatever version it has reached since)."""
        strategy, created = self.handle(platform_id, request_id, SetModel(strategy_id, body))
        return strategy, created

    def set_policy(
        self, platform_id: str, request_id: UUID, strategy_id: UUID, body: Mapping[str, Any]
    ) -> tuple[Strategy, bool]:
        """PUT the Strategy's rebalancing policy: its next version."""
        strategy, created = self.handle(platform_id, request_id, SetPolicy(strategy_id, body))
        return strategy, created

    def update_trader(
        self, platform_id: str, request_id: UUID, trader_id: UUID, auto_rebalance: bool
    ) -> tuple[Trader, bool]:
        """PATCH: set `auto_rebalance`. A replay changes nothing and answers the Trader as it
        is now (like every replay, which answers the resource, not a stored response)."""
        command = UpdateTrader(trader_id, auto_rebalance)
        trader, created = self.handle(platform_id, request_id, command)
        return trader, created

    def _create_strategy(
        self, platform_id: str, request_id: UUID, command: CreateStrategy, fingerprint: str
    ) -> Strategy:
        body = command.body
        currency = body.get("quoted_currency")
        if not isinstance(currency, str) or not currency:
            raise InvalidRequestError(
                "quoted_currency is required",
                errors=(FieldError("quoted_currency", "is required"),),
            )
        fiat_precision(currency)
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict):
            raise InvalidRequestError(
                "metadata must be a JSON object",
                errors=(FieldError("metadata", "must be an object"),),
            )
        unstorable = _not_storable_as_jsonb(metadata)
        if unstorable:
            raise InvalidRequestError(
                f"metadata {unstorable}", errors=(FieldError("metadata", unstorable),)
            )
        model = None
        if body.get("allocations") is not None:
            model = self._model(body["allocations"], currency)
        strategy = Strategy(platform_id, request_id, currency, metadata, fingerprint)
        if model is not None:
            strategy.set_model(model.as_list())
        key = RequestKey(platform_id, request_id, command.name, fingerprint, strategy.id)
        self.save(strategy, key)
        return strategy

    def _set_model(
        self, platform_id: str, request_id: UUID, command: SetModel, fingerprint: str
    ) -> Strategy:
        strategy = self.strategy(platform_id, command.strategy_id)
        model = self._model(command.body.get("allocations"), strategy.quoted_currency)
        strategy.set_model(model.as_list())
        key = RequestKey(platform_id, request_id, command.name, fingerprint, strategy.id)
        self.save(strategy, key)
        return strategy

    def _set_policy(
        self, platform_id: str, request_id: UUID, command: SetPolicy, fingerprint: str
    ) -> Strategy:
        strategy = self.strategy(platform_id, command.strategy_id)
        policy = parse_policy(command.body)
        if policy.calendar is not None and strategy.model is None:
            raise ModelRequiredError(
                "a policy with a calendar rebalances to the Strategy's model: set one first "
                f"(PUT /strategies/{strategy.id}/model)"
            )
        strategy.set_policy(policy)
        key = RequestKey(platform_id, request_id, command.name, fingerprint, strategy.id)
        self.save(strategy, key)
        return strategy

    def _run_policy(
        self,
        platform_id: str,
        request_id: UUID,
        command: RunPolicy,
        fingerprint: str,
        trace: RequestTrace = UNTRACED,
    ) -> Operation | Strategy:
        """Record the period's run and, when any Trader drifted outside the band and cooled
        down, request its rebalance (to the current model, of those Traders only) in the
        same atomic write. Refused when the period is not due (or has run: the record is
        the guard, whatever request id a scheduler uses), the policy changed since the
        scheduler read it, or the model cannot be traded."""
        strategy = self.strategy(platform_id, command.strategy_id)
        policy, model = strategy.policy, strategy.model
        if policy is None or policy.calendar is None or model is None:
            raise PolicyRunNotDueError(f"strategy {strategy.id} has no calendar to run")
        if strategy.policy_version != command.policy_version:
            raise PolicyRunNotDueError(
                f"the policy is at version {strategy.policy_version}, not {command.policy_version}"
            )
        since = strategy.policy_since or strategy.created_on
        due = policy.calendar.due(command.now, strategy.last_policy_period, since)
        if due is None or due.key != command.period:
            raise PolicyRunNotDueError(
                f"period {command.period} is not due (last run: {strategy.last_policy_period})"
            )
        if strategy.status is StrategyStatus.NEEDS_ADJUSTMENT:
            raise StrategyNeedsAdjustmentError(
                f"strategy {strategy.id} needs a new model: {', '.join(strategy.broken_assets)} "
                "cannot be traded"
            )
        targets = self._model(model, strategy.quoted_currency)
        missing = [asset for asset in targets.assets if asset not in command.prices]
        if missing:
            raise PolicyRunNotDueError(f"no indicative price for {', '.join(missing)}")
        selection = self._policy_selection(strategy, targets, command)
        operation = None
        if selection.participants:
            body = {"participants": [{"participant_code": c} for c in selection.participants]}
            extra = {
                "origin": "policy",
                "policy_version": str(strategy.policy_version),
                "period": command.period,
            }
            operation, planned = self._plan_operation(
                platform_id,
                request_id,
                operation_command(OperationType.REBALANCE, strategy.id, body),
                fingerprint,
                strategy,
                extra,
                trace,
            )
        strategy.record_policy_run(
            command.period,
            price_evidence(command.prices),
            evaluated=selection.evaluated,
            outside=selection.outside,
            cooling=selection.cooling,
            operation_id=operation.id if operation else None,
        )
        target = operation or strategy
        key = RequestKey(platform_id, request_id, command.name, fingerprint, target.id)
        self.save(strategy, *([operation, *planned] if operation else []), key)
        return target

    def _policy_selection(
        self, strategy: Strategy, targets: Allocations, command: RunPolicy
    ) -> RunSelection:
        assert strategy.policy is not None
        codes = self.scope(strategy.id, auto_rebalance_only=True)
        states: list[TraderState] = []
        for start in range(0, len(codes), 1000):
            batch = codes[start : start + 1000]
            found = self.get_many([ids.trader_id(strategy.id, c) for c in batch])
            for code in batch:
                trader = found.get(ids.trader_id(strategy.id, code))
                if isinstance(trader, Trader) and trader.status is TraderStatus.ACTIVE:
                    states.append(TraderState(code, trader.holdings, trader.rebalanced_on))
        return select_for_run(states, targets, strategy.policy, command.prices, command.now)

    def review_models(self, strategy_ids: Iterable[UUID]) -> list[Strategy]:
        """Follow the catalogue for these Strategies' models: each whose model names an
        instrument that is not tradable now goes to `needs_adjustment` (and back to
        `active` when it is again). The Strategies that changed, saved."""
        catalogue = self.catalogue()
        changed = []
        for strategy in self.get_many(list(strategy_ids)).values():
            if not isinstance(strategy, Strategy) or strategy.model is None:
                continue
            untradable = []
            for allocation in strategy.model:
                asset = allocation["underlying_currency"]
                instrument = catalogue.find(asset, strategy.quoted_currency)
                if instrument is None or not instrument.tradable:
                    untradable.append(asset)
            if strategy.review_model(untradable):
                changed.append(strategy)
        self.save(*changed)
        return changed

    def _model(self, raw: object, quoted_currency: str) -> Allocations:
        return parse_allocations(
            raw,
            quoted_currency=quoted_currency,
            catalogue=self.catalogue(),
            max_assets=self.limits.max_allocations,
        )

    def _request_operation(
        self,
        platform_id: str,
        request_id: UUID,
        command: OperationCommand,
        fingerprint: str,
        trace: RequestTrace = UNTRACED,
    ) -> Operation:
        """Validate and record an Operation with its chunk plan (one atomic write)."""
        strategy = self.strategy(platform_id, command.strategy_id)
        operation, planned = self._plan_operation(
            platform_id, request_id, command, fingerprint, strategy, trace=trace
        )
        key = RequestKey(platform_id, request_id, command.type.value, fingerprint, operation.id)
        self.save(operation, *planned, key)
        return operation

    def _plan_operation(
        self,
        platform_id: str,
        request_id: UUID,
        command: OperationCommand,
        fingerprint: str,
        strategy: Strategy,
        extra: Mapping[str, str] | None = None,
        trace: RequestTrace = UNTRACED,
    ) -> tuple[Operation, list[OperationChunk]]:
        """An Operation with its chunk plan, not saved yet; `extra` parameters are recorded
        with the plan's (a policy run's origin).

        A request that names nobody (rebalance, liquidate `all`) takes the roster as it stands
        now, which includes every write acknowledged before this call."""
        kind, strategy_id, body = command.type, command.strategy_id, command.body
        auto_only = needs_scope(kind, body)
        scope = (
            None if auto_only is None else self.scope(strategy_id, auto_rebalance_only=auto_only)
        )
        plan = plan_operation(
            kind,
            body,
            quoted_currency=strategy.quoted_currency,
            catalogue=self.catalogue(),
            limits=self.limits,
            scope=scope,
            model=(strategy.model, strategy.model_version),
            cash_buffer=strategy.policy.cash_buffer if strategy.policy is not None else ZERO,
        )
        orders = [order.as_dict() for order in plan.orders]
        chunks = [orders[i : i + self.chunk_size] for i in range(0, len(orders), self.chunk_size)]
        operation = Operation(
            platform_id=platform_id,
            strategy_id=strategy_id,
            request_id=request_id,
            type=kind.value,
            quoted_currency=strategy.quoted_currency,
            allocations=plan.allocations.as_list() if plan.allocations else None,
            parameters={**plan.parameters, **(extra or {})},
            request_hash=fingerprint,
            participant_count=len(orders),
            chunk_count=len(chunks),
            correlation_id=trace.correlation_id,
            traceparent=trace.traceparent,
        )
        # The plan's order objects and the scope are not needed past this point: dropped
        # before the write, they are not held (107 MB for a million) while it encodes.
        del plan, scope, orders
        if not chunks:
            operation.record_empty()
        planned = [
            OperationChunk(operation.id, i, chunk, platform_id, strategy_id)
            for i, chunk in enumerate(chunks)
        ]
        return operation, planned

    def cancel_operation(
        self, platform_id: str, request_id: UUID, operation_id: UUID
    ) -> tuple[Operation, bool]:
        """Cancel an Operation whose prices are not locked yet (see `Operation.cancel`)."""
        operation, created = self.handle(platform_id, request_id, CancelOperation(operation_id))
        return operation, created

    def _cancel(
        self, platform_id: str, request_id: UUID, command: CancelOperation, fingerprint: str
    ) -> Operation:
        """Idempotent: an Operation cancelled already (by another request) answers as it is.
        Its `Failing` and the pricing step's `PricesLocked` are both its next version, so
        whichever is saved second conflicts and meets the first."""
        operation = self.find(command.operation_id, Operation)
        if operation is None or operation.platform_id != platform_id:
            raise OperationNotFoundError(f"operation {command.operation_id} does not exist")
        operation.cancel()
        key = RequestKey(platform_id, request_id, command.name, fingerprint, operation.id)
        self.save(operation, key)
        return operation

    # -- previews -------------------------------------------------------------------------
    def preview(
        self,
        platform_id: str,
        command: OperationCommand,
        prices: Mapping[str, Decimal],
        priced_at: datetime,
    ) -> OperationPreview:
        """What `command` would do if it were requested now and priced at `prices` (the
        venue's indicative prices, fetched by the caller at `priced_at`): planned, checked,
        reserved and allotted by the real stages' code, and nothing saved (no Operation, no
        hold, no RequestKey). Refused exactly as the request would be (another platform's
        Strategy: not found). See `domain.preview`."""
        check_platform_id(platform_id)
        strategy = self.strategy(platform_id, command.strategy_id)
        operation, chunks = self._plan_operation(
            platform_id, PREVIEW_REQUEST_ID, command, command.fingerprint(), strategy
        )
        # As the check records them (`record_indicative_prices`): usable prices only.
        usable = {a: p for a, p in prices.items() if p.is_finite() and p > 0}
        terms = operation_terms(operation)
        market = self._market(operation, usable)
        buys = command.type.buys_from_float
        checked = []
        for chunk in chunks:
            orders = chunk.participant_orders
            traders = self._traders(operation, orders)
            profiles = self.get_many([ids.participant_id(platform_id, o.code) for o in orders])
            check = CreditCheck(terms, market)
            decisions = check_orders(check, platform_id, orders, traders, profiles)
            entries = (
                approved_entry(d, o, traders.get(o.code), buys=buys)
                for d, o in zip(decisions, orders, strict=True)
            )
            checked.append(CheckedChunk(decisions, tuple(e for e in entries if e is not None)))
        about = PreviewTerms(
            strategy.id,
            terms,
            market,
            operation.parameters,
            priced_at,
            self._float(platform_id, strategy.quoted_currency).available,
        )
        return preview_of(about, checked)

    def _update_trader(
        self, platform_id: str, request_id: UUID, command: UpdateTrader, fingerprint: str
    ) -> Trader:
        trader = self.trader(platform_id, command.trader_id)
        trader.change_auto_rebalance(command.auto_rebalance)
        self.save(
            trader,
            RequestKey(platform_id, request_id, command.name, fingerprint, command.trader_id),
        )
        return trader

    # -- queries the write side needs -------------------------------------------------
    def strategy(self, platform_id: str, strategy_id: UUID) -> Strategy:
        strategy = self.find(strategy_id, Strategy)
        if strategy is None or strategy.platform_id != platform_id:
            raise StrategyNotFoundError(f"strategy {strategy_id} does not exist")
        return strategy

    def trader(self, platform_id: str, trader_id: UUID) -> Trader:
        trader = self.find(trader_id, Trader)
        if (
            trader is None
            or trader.platform_id != platform_id
            or trader.status is TraderStatus.PENDING
        ):
            raise TraderNotFoundError(f"trader {trader_id} does not exist")
        return trader

    def operation(self, operation_id: UUID) -> Operation:
        operation = self.find(operation_id, Operation)
        if operation is None:
            raise OperationNotFoundError(f"operation {operation_id} does not exist")
        return operation

    def _claimed(self, platform_id: str, request_id: UUID, fingerprint: str) -> Any:
        """What an earlier request with this id made or changed (so this call is a replay),
        None if the id is new; refused when the id was used for any other request.

        Strategies and Operations made before request keys existed are found by their
        derived ids (their own `request_hash` then decides)."""
        key_id = ids.request_key_id(platform_id, request_id)
        made_before = [
            ids.strategy_id(platform_id, request_id),
            ids.operation_id(platform_id, request_id),
        ]
        found = self.get_many([key_id, *made_before])
        key = found.get(key_id)
        if isinstance(key, RequestKey):
            if key.fingerprint != fingerprint:
                raise _reused(key.kind)
            return self.get_many([key.target]).get(key.target)
        for aggregate_id in made_before:
            aggregate = found.get(aggregate_id)
            if aggregate is not None:
                if getattr(aggregate, "request_hash", None) != fingerprint:
                    raise _reused(type(aggregate).__name__)
                return aggregate
        return None


def _reused(kind: str) -> IdempotencyConflictError:
    return IdempotencyConflictError(
        f"this X-REQUEST-ID was already used by this platform for another request ({kind}); "
        "use a new X-REQUEST-ID for a new request, and resend one only to retry the same call"
    )


def _not_storable_as_jsonb(value: object) -> str | None:
    """Why decoded JSON cannot be stored as a Strategy's metadata, or None if it can.

    Python's json reads NaN and Infinity and keeps NUL characters, and PostgreSQL's jsonb
    refuses all three: the read models' consumer retried such a Strategy forever. Nesting is
    bounded well below pydantic's 255 levels: deeper, the outbox relay failed on the event
    (stopping every later one) and the POST itself was a 500. Iterative, so deeply nested
    metadata cannot exhaust the stack here. The size is bounded last (its JSON is only made
    once the depth is known to be small).
    """
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_METADATA_DEPTH:
            return f"must not nest deeper than {MAX_METADATA_DEPTH} levels"
        if isinstance(item, float) and not math.isfinite(item):
            return "must contain finite numbers only, not NaN or Infinity"
        if isinstance(item, str) and "\x00" in item:
            return "must not contain the NUL character"
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
    size = len(
        json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(errors="surrogatepass")
    )
    if size > MAX_METADATA_BYTES:
        return f"must be at most {MAX_METADATA_BYTES} bytes as compact JSON (it is {size})"
    return None
