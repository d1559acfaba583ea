"""The stages of an Operation, chunk by chunk: credit check, price lock, settlement, release.

Each stage method is idempotent (a chunk already checked or settled is a no-op) and writes
its whole effect in one `save`: the chunk's result, every Trader it touched, the float and
the Operation's barrier. A concurrent writer makes that save fail on an aggregate version,
and the caller simply runs the stage again on fresh state.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from domain import ids
from domain.calculators import Market
from domain.catalogue import InstrumentCatalogue, fiat_precision
from domain.chunk import OperationChunk, chunk_id
from domain.credit import (
    CreditCheck,
    CreditDecision,
    OperationTerms,
    Outcome,
    TraderSnapshot,
    planned_legs,
)
from domain.errors import IllegalTransitionError
from domain.float_account import FloatAccount
from domain.legs import Leg
from domain.money import ZERO, exact_methods, floor_to
from domain.operation import Operation
from domain.pricing import BlockFill, BlockOrder, LockedQuote, net_block_orders
from domain.reference import Participant
from domain.requests import Limits, ParticipantOrder
from domain.statuses import OperationReason, OperationStatus, OperationType, Reason, Side
from domain.trader import Trader

if TYPE_CHECKING:
    from eventsourcing.domain import Aggregate

    A = TypeVar("A", bound=Aggregate)


@dataclass(frozen=True)
class StageResult:
    """What a stage did, for the adapter to log and route (next tasks, progress)."""

    operation_id: UUID
    chunk: int
    status: OperationStatus
    counts: Mapping[str, int]
    replayed: bool = False


@exact_methods
class OperationStages:
    if TYPE_CHECKING:
        limits: Limits

        def get_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]: ...
        def find(self, aggregate_id: UUID, kind: type[A]) -> A | None: ...
        def catalogue(self) -> InstrumentCatalogue: ...
        def operation(self, operation_id: UUID) -> Operation: ...
        def _float(self, platform_id: str, currency: str) -> FloatAccount: ...
        def save(self, *objs: Any, **kwargs: Any) -> Any: ...

    # -- credit check -------------------------------------------------------------------
    def check_chunk(
        self, operation_id: UUID, index: int, indicative: Mapping[str, Decimal]
    ) -> StageResult:
        operation, chunk = self._operation_and_chunk(operation_id, index)
        replayed = chunk.stage != "planned"
        if not replayed:
            self._check(operation, chunk, index, indicative)
        return self._record_checked(operation, chunk, index, replayed)

    def _check(
        self,
        operation: Operation,
        chunk: OperationChunk,
        index: int,
        indicative: Mapping[str, Decimal],
    ) -> None:
        """The heavy step: decide every Trader of the chunk, hold the approved ones and
        reserve their float, in one write that does not touch the Operation."""
        orders = chunk.participant_orders
        traders = self._traders(operation, orders)
        profiles = self.get_many(
            [ids.participant_id(operation.platform_id, o.code) for o in orders]
        )
        buys = operation.type.buys_from_float
        float_account = self._float(operation.platform_id, operation.quoted_currency)
        check = CreditCheck(
            _terms(operation, self.limits),
            self._market(operation, indicative),
            float_account.available if buys else ZERO,
        )
        touched: list[Trader] = []
        records = []
        for order in orders:
            trader = traders.get(order.code)
            profile = profiles.get(ids.participant_id(operation.platform_id, order.code))
            decision = check.check(
                order,
                _snapshot(trader),
                profile.profile() if isinstance(profile, Participant) else None,
            )
            if decision.outcome is Outcome.APPROVED:
                trader = trader or Trader(
                    operation.strategy_id, operation.platform_id, order.code, order.auto_rebalance
                )
                trader.place_hold(
                    operation.id,
                    ids.execution_id(operation.id, order.code),
                    operation.type,
                    decision.legs,
                )
                touched.append(trader)
            records.append(_decision_record(operation, order, decision, trader))
        flows, cash = _flows(
            check.terms, orders, check.decisions, traders, check.market.fiat_precision
        )
        float_account.hold(operation.id, index, sum((d.float_draw for d in check.decisions), ZERO))
        chunk.record_check(
            records,
            {
                "approved": sum(d.outcome is Outcome.APPROVED for d in check.decisions),
                "rejected": sum(d.outcome is Outcome.REJECTED for d in check.decisions),
                "skipped": sum(d.outcome is Outcome.SKIPPED for d in check.decisions),
                "flows": flows,
                "cash": str(cash),
            },
        )
        self.save(chunk, *([float_account] if buys else []), *touched)

    def _record_checked(
        self, operation: Operation, chunk: OperationChunk, index: int, replayed: bool
    ) -> StageResult:
        """The barrier step: a small write on the Operation alone, so chunks checked in
        parallel only ever contend here (and a conflict retries this step, not the chunk)."""
        if operation.chunk_stage(index) == "planned":
            summary = chunk.summary
            operation.record_chunk_checked(
                index,
                approved=summary["approved"],
                rejected=summary["rejected"],
                skipped=summary["skipped"],
                flows=summary["flows"],
                cash=Decimal(summary["cash"]),
            )
            self.save(operation)
            replayed = False
        return self._result(operation, index, chunk, replayed)

    # -- pricing ------------------------------------------------------------------------
    def assets_to_price(self, operation_id: UUID) -> list[str]:
        return sorted(self.operation(operation_id).flows)

    def estimated_blocks(
        self, operation_id: UUID, indicative: Mapping[str, Decimal]
    ) -> dict[str, BlockOrder]:
        """The block orders at indicative prices: which side and size to ask firm quotes for."""
        return self._block_orders(self.operation(operation_id), indicative)

    def _block_orders(
        self, operation: Operation, prices: Mapping[str, Decimal]
    ) -> dict[str, BlockOrder]:
        catalogue, currency = self.catalogue(), operation.quoted_currency
        return net_block_orders(
            operation.type,
            operation.flows,
            operation.cash_in_scope,
            operation.allocation_set,
            prices,
            lambda asset: catalogue.precision(asset, currency),
        )

    def lock_prices(self, operation_id: UUID, quotes: Mapping[str, LockedQuote]) -> Operation:
        operation = self.operation(operation_id)
        if operation.status is not OperationStatus.PRICING or operation.failure:
            return operation
        missing = sorted(set(operation.flows) - set(quotes))
        if missing:
            raise IllegalTransitionError(f"no locked price for {', '.join(missing)}")
        unpriced = sorted(a for a, q in quotes.items() if not (q.price.is_finite() and q.price > 0))
        if unpriced:
            raise IllegalTransitionError(f"a locked price must be positive: {', '.join(unpriced)}")
        orders = self._block_orders(operation, {a: q.price for a, q in quotes.items()})
        operation.lock_prices(
            {asset: quote.as_dict() for asset, quote in quotes.items() if asset in operation.flows},
            {asset: order.as_dict() for asset, order in orders.items()},
        )
        self.save(operation)
        return operation

    def fail_operation(self, operation_id: UUID, reason: OperationReason, detail: str) -> Operation:
        """Quotes or the venue failed: nobody trades, and every hold will be released."""
        operation = self.operation(operation_id)
        if operation.status.terminal or operation.failure:
            return operation
        operation.fail(reason, detail)
        self.save(operation)
        return operation

    def record_fill(self, operation_id: UUID, fill: BlockFill) -> Operation:
        operation = self.operation(operation_id)
        locked = Decimal(operation.locked_prices[fill.asset]["price"])
        if fill.price != locked:
            raise IllegalTransitionError(
                f"fill of {fill.asset} at {fill.price} differs from the locked price {locked}"
            )
        operation.record_fill(fill.asset, fill.as_dict())
        if operation.pending_events:
            self.save(operation)
        return operation

    # -- settlement ---------------------------------------------------------------------
    def settle_chunk(self, operation_id: UUID, index: int) -> StageResult:
        operation, chunk = self._operation_and_chunk(operation_id, index)
        replayed = chunk.stage != "checked"
        if not replayed:
            if operation.status is not OperationStatus.SETTLING or not operation.ready_to_settle:
                raise IllegalTransitionError(f"operation {operation_id} is not ready to settle")
            self._settle(operation, chunk)
        if operation.chunk_stage(index) == "checked" and chunk.stage == "settled":
            summary = chunk.summary
            debit, credit = Decimal(summary["debit"]), Decimal(summary["credit"])
            float_account = self._float(operation.platform_id, operation.quoted_currency)
            float_account.settle(operation.id, index, debit, credit)
            operation.record_chunk_settled(
                index, summary["settled"], summary["skipped"], summary["totals"], debit, credit
            )
            self.save(operation, float_account)
            replayed = False
        return self._result(operation, index, chunk, replayed)

    def _settle(self, operation: Operation, chunk: OperationChunk) -> None:
        """The heavy step: every approved Trader of the chunk trades at the locked prices."""
        market = self._market(operation, operation_prices(operation))
        terms = _terms(operation, self.limits)
        approved = _approved_orders(chunk)
        traders = self._traders(operation, approved)
        totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
        outcomes, debit, credit = [], ZERO, ZERO
        for order in approved:
            trader = traders[order.code]
            legs = planned_legs(terms, order, trader.holdings, market)
            if not legs and not (terms.type is OperationType.LIQUIDATION and trader.cash > 0):
                trader.release_hold(operation.id, Outcome.SKIPPED.value, Reason.DUST.value)
                outcomes.append(
                    {"participant_code": order.code, "outcome": "skipped", "reasons": "dust"}
                )
                continue
            funded = (order.amount or ZERO) if terms.type.buys_from_float else ZERO
            paid_out = _paid_out(terms.type, trader.cash, legs)
            trader.settle(
                operation.id,
                terms.type,
                legs,
                dict(market.prices),
                funded,
                paid_out,
                order.auto_rebalance if terms.type is OperationType.ENROLLMENT else None,
            )
            _add_totals(totals, legs)
            debit, credit = debit + funded, credit + paid_out
            outcomes.append({"participant_code": order.code, "outcome": "settled", "reasons": ""})
        chunk.record_settlement(
            outcomes,
            {
                "settled": sum(o["outcome"] == "settled" for o in outcomes),
                "skipped": sum(o["outcome"] == "skipped" for o in outcomes),
                "totals": {a: {k: str(v) for k, v in t.items()} for a, t in totals.items()},
                "debit": str(debit),
                "credit": str(credit),
            },
        )
        self.save(chunk, *traders.values())

    def release_chunk(self, operation_id: UUID, index: int) -> StageResult:
        """After a failure: release the chunk's holds; its Executions end rejected."""
        operation, chunk = self._operation_and_chunk(operation_id, index)
        replayed = chunk.stage != "checked"
        if not replayed:
            if not operation.failure:
                raise IllegalTransitionError(f"operation {operation_id} is not failing")
            approved = _approved_orders(chunk)
            traders = self._traders(operation, approved)
            for trader in traders.values():
                trader.release_hold(operation.id, Outcome.REJECTED.value, operation.failure)
            chunk.record_release(operation.failure)
            self.save(chunk, *traders.values())
        if operation.chunk_stage(index) == "checked" and chunk.stage == "released":
            float_account = self._float(operation.platform_id, operation.quoted_currency)
            float_account.release(operation.id, index)
            operation.record_chunk_released(index, chunk.summary["released"])
            self.save(operation, float_account)
            replayed = False
        return self._result(operation, index, chunk, replayed)

    # -- helpers ------------------------------------------------------------------------
    def _operation_and_chunk(
        self, operation_id: UUID, index: int
    ) -> tuple[Operation, OperationChunk]:
        operation = self.operation(operation_id)
        chunk = self.find(chunk_id(operation_id, index), OperationChunk)
        if chunk is None:
            raise IllegalTransitionError(f"operation {operation_id} has no chunk {index}")
        return operation, chunk

    def _traders(
        self, operation: Operation, orders: Sequence[ParticipantOrder]
    ) -> dict[str, Trader]:
        by_id = {ids.trader_id(operation.strategy_id, o.code): o.code for o in orders}
        found = self.get_many(list(by_id))
        return {by_id[t]: trader for t, trader in found.items() if isinstance(trader, Trader)}

    def _market(self, operation: Operation, prices: Mapping[str, Decimal]) -> Market:
        currency = operation.quoted_currency
        return Market(currency, fiat_precision(currency), self.catalogue(), prices)

    @staticmethod
    def _result(
        operation: Operation, index: int, chunk: OperationChunk, replayed: bool = False
    ) -> StageResult:
        del chunk
        return StageResult(operation.id, index, operation.status, dict(operation.counts), replayed)


def _approved_orders(chunk: OperationChunk) -> list[ParticipantOrder]:
    approved = set(chunk.approved_codes)
    return [order for order in chunk.participant_orders if order.code in approved]


def operation_prices(operation: Operation) -> dict[str, Decimal]:
    return {asset: Decimal(q["price"]) for asset, q in operation.locked_prices.items()}


def _terms(operation: Operation, limits: Limits) -> OperationTerms:
    tolerance = operation.parameters.get("drift_tolerance")
    return OperationTerms(
        operation.id,
        operation.type,
        operation.allocation_set,
        limits.sell_price_buffer,
        Decimal(tolerance) if tolerance is not None else None,
    )


def _snapshot(trader: Trader | None) -> TraderSnapshot | None:
    if trader is None:
        return None
    return TraderSnapshot(trader.status, trader.held_by, trader.holdings)


def _decision_record(
    operation: Operation, order: ParticipantOrder, decision: CreditDecision, trader: Trader | None
) -> dict[str, str]:
    return {
        "participant_code": order.code,
        "outcome": decision.outcome.value,
        "reasons": ",".join(r.value for r in decision.reasons),
        "trader_id": str(trader.id) if trader is not None else "",
        "execution_id": str(ids.execution_id(operation.id, order.code)),
        "float_draw": str(decision.float_draw),
    }


def _flows(
    terms: OperationTerms,
    orders: Sequence[ParticipantOrder],
    decisions: Sequence[CreditDecision],
    traders: Mapping[str, Trader],
    fiat_precision: int,
) -> tuple[dict[str, dict[str, str]], Decimal]:
    """Price-independent sums over the approved Traders, from which the pricing stage sizes
    each block order at the locked price (see `domain.pricing.net_block_orders`).

    Per asset: `buy_notional` (fiat budgets of planned buys), `sell_worth` (fiat worth of
    planned partial sells) and `held` (quantity held, which rebalance and liquidation trade
    from); plus the approved Traders' cash, which a rebalance invests. Every asset the
    Traders hold or are allocated is listed, because each needs a locked price.
    """
    flows: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    cash = ZERO
    allocations = terms.allocations
    by_code = {order.code: order for order in orders}
    for decision in decisions:
        if decision.outcome is not Outcome.APPROVED:
            continue
        order = by_code[decision.participant_code]
        trader = traders.get(decision.participant_code)
        holdings = trader.holdings if trader else None
        for asset in allocations.assets if allocations else ():
            flows[asset]["held"] += ZERO
        if holdings is not None and terms.type in (
            OperationType.REBALANCE,
            OperationType.LIQUIDATION,
        ):
            cash += holdings.cash
            for asset in holdings.held_assets:
                flows[asset]["held"] += holdings.quantity(asset)
        for leg in decision.legs:
            weight = allocations.weight_of(leg.asset) if allocations else ZERO
            if terms.type.buys_from_float and order.amount is not None:
                flows[leg.asset]["buy_notional"] += floor_to(order.amount * weight, fiat_precision)
            elif terms.type is OperationType.PARTIAL_SELL and order.amount is not None:
                flows[leg.asset]["sell_worth"] += order.amount * weight
    return {a: {k: str(v) for k, v in f.items()} for a, f in flows.items()}, cash


def _paid_out(kind: OperationType, cash: Decimal, legs: tuple[Leg, ...]) -> Decimal:
    proceeds = sum((leg.notional for leg in legs if leg.side is Side.SELL), ZERO)
    if kind is OperationType.PARTIAL_SELL:
        return proceeds
    if kind is OperationType.LIQUIDATION:
        return cash + proceeds
    return ZERO


def _add_totals(totals: dict[str, dict[str, Decimal]], legs: tuple[Leg, ...]) -> None:
    for leg in legs:
        moves = totals[leg.asset]
        if leg.side is Side.BUY:
            moves["bought"] += leg.quantity
            moves["paid"] += leg.notional
        else:
            moves["sold"] += leg.quantity
            moves["received"] += leg.notional
