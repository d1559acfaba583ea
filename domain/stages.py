"""The stages of an Operation, chunk by chunk: credit check, price lock, settlement, release.

Each stage method is idempotent (a chunk already checked or settled is a no-op). A chunk
stage writes in two steps, each one atomic `save`: the heavy step (the chunk's result and
every Trader it touched) and a small barrier step on the Operation alone, the one that ends
the Operation also settling (or releasing) the float for all its chunks in one event. A
concurrent writer makes a save fail on an aggregate version, and the caller runs the stage
again on fresh state: the heavy step is then found done, and only the barrier is redone.

The order: every chunk is checked at the Operation's one set of indicative prices; pricing
reserves the float in request order, then locks one price per asset with each block sized
from the Traders' own allotments at that price; settlement applies exactly those allotments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from domain import ids
from domain.allotment import (
    PACK_ABOVE,
    Allotment,
    AllottedChunks,
    ChunkEntries,
    Entry,
    PricingBook,
    allot,
    float_budgets,
    pack_entries,
)
from domain.calculators import Market
from domain.catalogue import InstrumentCatalogue, fiat_precision
from domain.checking import check_orders
from domain.chunk import OperationChunk, chunk_id
from domain.credit import CreditCheck, CreditDecision, OperationTerms, Outcome
from domain.errors import IllegalTransitionError
from domain.float_account import FloatAccount
from domain.legs import Holdings, Leg
from domain.money import ZERO, exact_methods
from domain.operation import Operation
from domain.pricing import BlockFill, BlockOrder, LockedQuote
from domain.requests import ParticipantOrder
from domain.statuses import OperationReason, OperationStatus, OperationType, Side
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
    #: The chunk's participants (what a stage went through, for its throughput).
    participants: int = 0


#: Chunks decoded per load when the pricing step gathers every chunk's participants (50
#: chunks of 500: 25,000 participants, one query each).
CHUNKS_PER_LOAD = 50


@exact_methods
class OperationStages:
    #: What pricing allotted at the locked prices, for this process's settlements to take.
    allotted_chunks: AllottedChunks

    if TYPE_CHECKING:

        def get_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any]: ...
        def find(self, aggregate_id: UUID, kind: type[A]) -> A | None: ...
        def catalogue(self) -> InstrumentCatalogue: ...
        def operation(self, operation_id: UUID) -> Operation: ...
        def _float(self, platform_id: str, currency: str) -> FloatAccount: ...
        def save(self, *objs: Any, **kwargs: Any) -> Any: ...

    # -- credit check -------------------------------------------------------------------
    def record_indicative_prices(
        self, operation_id: UUID, offered: Mapping[str, Decimal]
    ) -> dict[str, Decimal]:
        """The Operation's indicative prices: the first set offered is kept, and every chunk
        is checked at it. Returns the kept set (the offered one may have lost the race)."""
        operation = self.operation(operation_id)
        if not operation.indicative_prices and operation.status is OperationStatus.VALIDATING:
            usable = {a: str(p) for a, p in offered.items() if p.is_finite() and p > 0}
            operation.record_indicative_prices(usable)
            self.save(operation)
        return operation.prices_for_check

    def check_chunk(self, operation_id: UUID, index: int) -> StageResult:
        operation, chunk = self._operation_and_chunk(operation_id, index)
        if operation.failure and chunk.stage != "checked":
            # Cancelled before this chunk was checked (or its release won the race with this
            # check): nothing to decide, its participants' Executions are cancelled.
            return self.release_chunk(operation_id, index)
        replayed = chunk.stage != "planned"
        if not replayed:
            if not operation.indicative_prices:
                raise IllegalTransitionError(
                    f"operation {operation_id} has no indicative prices to check at yet"
                )
            self._check(operation, chunk)
        return self._record_checked(operation, chunk, index, replayed)

    def _check(self, operation: Operation, chunk: OperationChunk) -> None:
        """The heavy step: decide every Trader of the chunk and hold the approved ones, in one
        write that touches neither the Operation nor the float."""
        orders = chunk.participant_orders
        traders = self._traders(operation, orders)
        profiles = self.get_many(
            [ids.participant_id(operation.platform_id, o.code) for o in orders]
        )
        check = CreditCheck(
            operation_terms(operation), self._market(operation, operation.prices_for_check)
        )
        touched: list[Trader] = []
        records = []
        decisions = check_orders(check, operation.platform_id, orders, traders, profiles)
        for order, decision in zip(orders, decisions, strict=True):
            trader = traders.get(order.code)
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
        flows, cash = _flows(check.terms, check.decisions, traders)
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
        self.save(chunk, *touched)

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

    def reserve_float(self, operation_id: UUID) -> Operation:
        """Reserve the float for the Operation's buyers, in request order across its chunks
        (first come, first served: §11.12), in one write of the Operation and the float. Each
        chunk's starting budget is recorded so its settlement finds the same buyers."""
        operation = self.operation(operation_id)
        if _reserves(operation):
            self._reserve(operation, self._entries_by_chunk(operation))
        return operation

    def pricing_book(self, operation_id: UUID) -> PricingBook:
        """Everything pricing needs to size the blocks at any prices, from one load of the
        chunks; the float is reserved first (once), since the book allots from it."""
        return self._pricing_book(self.operation(operation_id))

    def open_pricing(self, operation_id: UUID) -> tuple[Operation, PricingBook | None]:
        """The pricing step's one load of the Operation: it, and its `pricing_book` unless it
        is not (or no longer) pricing. The book carries the Operation on to `lock_prices`."""
        operation = self.operation(operation_id)
        if operation.status is not OperationStatus.PRICING or operation.failure:
            return operation, None
        return operation, self._pricing_book(operation)

    def _pricing_book(self, operation: Operation) -> PricingBook:
        chunks = self._entries_by_chunk(operation)
        if _reserves(operation):
            self._reserve(operation, chunks)
        return self._book(operation, chunks)

    def _reserve(self, operation: Operation, chunks: Sequence[ChunkEntries]) -> None:
        account = self._float(operation.platform_id, operation.quoted_currency)
        reserved = float_budgets(operation.type, chunks, account.available)
        budgets = {str(index): str(budget) for index, (budget, _) in enumerate(reserved)}
        holds = {index: held for index, (_, held) in enumerate(reserved)}
        account.hold(operation.id, holds)
        operation.reserve_float(budgets, sum(holds.values(), ZERO))
        self.save(operation, account)

    def _book(
        self, operation: Operation, chunks: Sequence[ChunkEntries] | None = None
    ) -> PricingBook:
        currency = operation.quoted_currency
        chunks = self._entries_by_chunk(operation) if chunks is None else chunks
        return PricingBook(
            operation=operation,
            operation_version=operation.version,
            checked_net=operation.checked_net,
            operation_id=operation.id,
            terms=operation_terms(operation),
            catalogue=self.catalogue(),
            quoted_currency=currency,
            fiat_precision=fiat_precision(currency),
            assets=tuple(sorted(operation.flows)),
            chunks=tuple(
                (entries, operation.float_budget(index)) for index, entries in enumerate(chunks)
            ),
        )

    def lock_prices(
        self,
        operation_id: UUID,
        quotes: Mapping[str, LockedQuote],
        crossed: Mapping[str, Mapping[str, str]] | None = None,
        book: PricingBook | None = None,
    ) -> Operation:
        """Lock one price per asset and the block orders: each block is the exact net of the
        Traders' allotments at these prices, and must fit the quote it is placed against.
        `book`: the one `pricing_book` gave (chunks and budgets cannot change once the float
        is reserved), to spare loading every chunk again."""
        operation = _as_loaded(book, operation_id) or self.operation(operation_id)
        if operation.status is not OperationStatus.PRICING or operation.failure:
            return operation
        missing = sorted(set(operation.flows) - set(quotes))
        if missing:
            raise IllegalTransitionError(f"no locked price for {', '.join(missing)}")
        unpriced = sorted(a for a, q in quotes.items() if not (q.price.is_finite() and q.price > 0))
        if unpriced:
            raise IllegalTransitionError(f"a locked price must be positive: {', '.join(unpriced)}")
        crossed = dict(crossed or {})
        if book is None or book.operation_id != operation.id or not _reserved_for(operation, book):
            book = self._book(operation)
        orders = book.blocks({a: q.price for a, q in quotes.items()})
        carried = {a: orders.pop(a) for a in list(orders) if a in crossed}
        unfit = sorted(a for a, order in orders.items() if not quotes[a].covers(order))
        if unfit:
            raise IllegalTransitionError(f"the block orders do not fit their quotes: {unfit}")
        operation.lock_prices(
            {asset: quote.as_dict() for asset, quote in quotes.items() if asset in operation.flows},
            {asset: order.as_dict() for asset, order in orders.items()},
            {a: {**crossed[a], "net": str(_signed(carried.get(a)))} for a in crossed},
        )
        self.save(operation)
        self.allotted_chunks.keep(operation.id, book, operation_prices(operation))
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
        """A block's fill; one that is not the order at the locked price fails the Operation
        (see `Operation.record_fill`)."""
        operation = self.operation(operation_id)
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
            self._settle(operation, chunk, index)
        if operation.chunk_stage(index) == "checked" and chunk.stage == "settled":
            summary = chunk.summary
            operation.record_chunk_settled(
                index,
                summary["settled"],
                summary["skipped"],
                summary["totals"],
                Decimal(summary["debit"]),
                Decimal(summary["credit"]),
                summary.get("rejected", 0),
            )
            self._save_barrier(operation)
            replayed = False
        return self._result(operation, index, chunk, replayed)

    def _settle(self, operation: Operation, chunk: OperationChunk, index: int) -> None:
        """The heavy step: every approved Trader of the chunk gets exactly its allotment at
        the locked prices (the one the block was sized from), or is released."""
        prices = operation_prices(operation)
        market = self._market(operation, prices)
        entries = _entries(operation, chunk)
        budget = operation.float_budget(index)
        terms = operation_terms(operation)
        allotments = self.allotted_chunks.take(
            operation.id, index, entries, prices, budget, terms
        ) or allot(terms, entries, market, budget)
        traders = self._traders(operation, [entry.order for entry in entries])
        totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
        outcomes = []
        for entry, allotment in zip(entries, allotments, strict=True):
            trader = traders[entry.order.code]
            _require_as_held(operation, trader, entry)
            outcomes.append(_apply(operation, trader, entry.order, allotment, market))
            _add_totals(totals, allotment.legs)
        counted = [o["outcome"] for o in outcomes]
        chunk.record_settlement(
            outcomes,
            {
                "settled": counted.count("settled"),
                "skipped": counted.count(Outcome.SKIPPED.value),
                "rejected": counted.count(Outcome.REJECTED.value),
                "totals": {a: {k: str(v) for k, v in t.items()} for a, t in totals.items()},
                "debit": str(sum((a.funded for a in allotments), ZERO)),
                "credit": str(sum((a.paid_out for a in allotments), ZERO)),
            },
        )
        self.save(chunk, *traders.values())

    def release_chunk(self, operation_id: UUID, index: int) -> StageResult:
        """After a failure or a cancellation: release the chunk's holds; their Executions end
        rejected (cancelled, when the platform cancelled). A chunk the cancellation caught
        before its check holds nothing: its participants' Executions are cancelled."""
        operation, chunk = self._operation_and_chunk(operation_id, index)
        replayed = chunk.stage == "released" or chunk.stage == "settled"
        if not replayed:
            if not operation.failure:
                raise IllegalTransitionError(f"operation {operation_id} is not failing")
            if chunk.stage == "planned":
                chunk.record_cancelled(_cancelled_records(operation, chunk), operation.failure)
                self.save(chunk)
            else:
                outcome = Outcome.CANCELLED if operation.cancelled else Outcome.REJECTED
                approved = _approved_orders(chunk)
                traders = self._traders(operation, approved)
                for trader in traders.values():
                    trader.release_hold(operation.id, outcome.value, operation.failure)
                chunk.record_release(operation.failure, outcome.value)
                self.save(chunk, *traders.values())
        if chunk.stage == "released" and operation.chunk_stage(index) != "released":
            if operation.chunk_stage(index) == "planned":
                # Its check's barrier was never written (the cancellation came between the
                # chunk's check and it): count the check from its decisions first.
                _record_check_from(operation, chunk, index)
            operation.record_chunk_released(
                index, chunk.summary["released"], chunk.summary.get("cancelled", 0)
            )
            self._save_barrier(operation)
            replayed = False
        return self._result(operation, index, chunk, replayed)

    def _save_barrier(self, operation: Operation) -> None:
        """A chunk's barrier writes the Operation alone, so parallel chunks (and parallel
        Operations) never race on the platform's one float account. The barrier that ends the
        Operation settles the float for every chunk at once (or, failed, releases its holds),
        in the same atomic write: a rerun after a lost race finds the chunk recorded and the
        float untouched, or both done."""
        if not operation.status.terminal:
            self.save(operation)
            return
        account = self._float(operation.platform_id, operation.quoted_currency)
        if operation.failure:
            account.release_operation(operation.id)
        else:
            account.settle_operation(operation.id, operation.deferred_float_moves)
        self.save(operation, account)

    # -- helpers ------------------------------------------------------------------------
    def _operation_and_chunk(
        self, operation_id: UUID, index: int
    ) -> tuple[Operation, OperationChunk]:
        operation = self.operation(operation_id)
        chunk = self.find(chunk_id(operation_id, index), OperationChunk)
        if chunk is None:
            raise IllegalTransitionError(f"operation {operation_id} has no chunk {index}")
        return operation, chunk

    def _entries_by_chunk(self, operation: Operation) -> list[ChunkEntries]:
        """Every chunk's approved participants, in chunk order, loaded `CHUNKS_PER_LOAD`
        chunks at a time: the decoded chunks of a million-Trader Operation, all at once and
        beside the entries taken from them, took the process to 3.9 GB. Packed when the
        Operation is large (`PACK_ABOVE`): a million decoded entries alone weigh 1 GB."""
        pack = operation.participant_count > PACK_ABOVE
        entries: list[ChunkEntries] = []
        for start in range(0, operation.chunk_count, CHUNKS_PER_LOAD):
            indexes = range(start, min(start + CHUNKS_PER_LOAD, operation.chunk_count))
            wanted = [chunk_id(operation.id, i) for i in indexes]
            found = self.get_many(wanted)
            chunks = [found.get(i) for i in wanted]
            if not all(isinstance(c, OperationChunk) and c.stage != "planned" for c in chunks):
                raise IllegalTransitionError(f"operation {operation.id} has chunks not checked yet")
            for chunk in chunks:
                if isinstance(chunk, OperationChunk):
                    mine = _entries(operation, chunk)
                    entries.append(pack_entries(mine) if pack else tuple(mine))
        return entries

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
        return StageResult(
            operation.id,
            index,
            operation.status,
            dict(operation.counts),
            replayed,
            len(chunk.orders),
        )


def _reserves(operation: Operation) -> bool:
    """Whether the float is still to be reserved for this Operation (its buyers, once)."""
    return (
        operation.type.buys_from_float
        and operation.status is OperationStatus.PRICING
        and not operation.float_reserved
        and not operation.failure
    )


def _as_loaded(book: PricingBook | None, operation_id: UUID) -> Operation | None:
    """The Operation the book was made from, if nothing has changed it since: not a save
    that lost to another writer (the object is then ahead of the store and must be loaded
    anew) nor a book made before the float was reserved (the object is behind it)."""
    if book is None or book.operation is None or book.operation_id != operation_id:
        return None
    operation = book.operation
    if operation.version != book.operation_version or _reserves(operation):
        return None
    return operation


def _reserved_for(operation: Operation, book: PricingBook) -> bool:
    """A book made before the float was reserved allots from no budget: not usable."""
    budgets = tuple(operation.float_budget(i) for i in range(len(book.chunks)))
    return budgets == tuple(budget for _, budget in book.chunks)


def _cancelled_records(operation: Operation, chunk: OperationChunk) -> list[dict[str, Any]]:
    """One cancelled Execution per participant of a chunk the cancellation caught unchecked."""
    reason = operation.failure
    return [
        {
            "participant_code": order.code,
            "outcome": Outcome.CANCELLED.value,
            "reasons": reason,
            "trader_id": "",
            "execution_id": str(ids.execution_id(operation.id, order.code)),
        }
        for order in chunk.participant_orders
    ]


def _record_check_from(operation: Operation, chunk: OperationChunk, index: int) -> None:
    """The check's barrier, counted from a released chunk's decisions (its summary is the
    release's by now). Only a cancellation comes between a chunk's check and its barrier:
    every other failure comes after pricing started, when every chunk's barrier is written.
    So the holds it released became `cancelled`, and the `rejected` and `skipped` are the
    check's own."""
    assert operation.cancelled, "only a cancellation releases a chunk before its check barrier"
    outcomes = [d["outcome"] for d in chunk.decisions.values()]
    operation.record_chunk_checked(
        index,
        approved=chunk.summary["released"],
        rejected=outcomes.count(Outcome.REJECTED.value),
        skipped=outcomes.count(Outcome.SKIPPED.value),
        flows={},
    )


def _approved_orders(chunk: OperationChunk) -> list[ParticipantOrder]:
    approved = set(chunk.approved_codes)
    return [order for order in chunk.participant_orders if order.code in approved]


def _entries(operation: Operation, chunk: OperationChunk) -> list[Entry]:
    """The chunk's approved participants in request order, with the holdings they were held
    with (recorded by the check for the Operations whose legs depend on holdings)."""
    entries = []
    for order in _approved_orders(chunk):
        decision = chunk.decisions[order.code]
        positions = decision.get("positions") or {}
        holdings = Holdings(
            {asset: Decimal(q) for asset, q in positions.items()},
            Decimal(decision.get("cash", "0")),
        )
        entries.append(Entry(order, holdings))
    del operation
    return entries


def _require_as_held(operation: Operation, trader: Trader, entry: Entry) -> None:
    """A held Trader cannot have changed since its check; if it did, the allotment the block
    was sized from would not be its own: refuse rather than settle the wrong numbers."""
    if _uses_holdings(operation.type) and trader.holdings != entry.holdings:
        raise IllegalTransitionError(
            f"trader {trader.id} changed while held by {operation.id}: "
            f"{trader.holdings} != {entry.holdings}"
        )


def _uses_holdings(kind: OperationType) -> bool:
    return not kind.buys_from_float


def _apply(
    operation: Operation,
    trader: Trader,
    order: ParticipantOrder,
    allotment: Allotment,
    market: Market,
) -> dict[str, str]:
    if not allotment.trades:
        reasons = ",".join(r.value for r in allotment.reasons)
        trader.release_hold(operation.id, allotment.outcome.value, reasons.split(",")[0])
        return {
            "participant_code": order.code,
            "outcome": allotment.outcome.value,
            "reasons": reasons,
        }
    trader.settle(
        operation.id,
        operation.type,
        allotment.legs,
        dict(market.prices),
        allotment.funded,
        allotment.paid_out,
        order.auto_rebalance if operation.type is OperationType.ENROLLMENT else None,
    )
    return {"participant_code": order.code, "outcome": "settled", "reasons": ""}


def operation_prices(operation: Operation) -> dict[str, Decimal]:
    return {asset: Decimal(q["price"]) for asset, q in operation.locked_prices.items()}


def operation_terms(operation: Operation) -> OperationTerms:
    """The Operation's terms as its `Requested` event recorded them: the one reading of its
    parameters for the check, pricing and settlement, so all three compute the same legs.
    An Operation recorded without `cash_buffer` (every one before it existed) has none."""
    tolerance = operation.parameters.get("drift_tolerance")
    buffer = operation.parameters.get("cash_buffer")
    return OperationTerms(
        operation.id,
        operation.type,
        operation.allocation_set,
        Decimal(tolerance) if tolerance is not None else None,
        Decimal(buffer) if buffer is not None else ZERO,
    )


def _decision_record(
    operation: Operation, order: ParticipantOrder, decision: CreditDecision, trader: Trader | None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "participant_code": order.code,
        "outcome": decision.outcome.value,
        "reasons": ",".join(r.value for r in decision.reasons),
        "trader_id": str(trader.id) if trader is not None else "",
        "execution_id": str(ids.execution_id(operation.id, order.code)),
    }
    if (
        decision.outcome is Outcome.APPROVED
        and trader is not None
        and _uses_holdings(operation.type)
    ):
        record["positions"] = {asset: str(q) for asset, q in sorted(trader.positions.items())}
        record["cash"] = str(trader.cash)
    return record


def _flows(
    terms: OperationTerms, decisions: Sequence[CreditDecision], traders: Mapping[str, Trader]
) -> tuple[dict[str, dict[str, str]], Decimal]:
    """Per asset that needs a locked price (allocated, or held by an approved Trader of a
    rebalance or liquidation), the quantity the approved Traders hold and the net of their
    legs at the check's prices (`PricingBook.checked_blocks` sizes the first quotes from it);
    and their cash."""
    flows: dict[str, Decimal] = (
        {asset: ZERO for asset in terms.allocations.assets} if (terms.allocations) else {}
    )
    net = dict.fromkeys(flows, ZERO)
    cash = ZERO
    for decision in decisions:
        if decision.outcome is not Outcome.APPROVED:
            continue
        for leg in decision.legs:
            signed = leg.quantity if leg.side is Side.BUY else -leg.quantity
            net[leg.asset] = net.get(leg.asset, ZERO) + signed
        trader = traders.get(decision.participant_code)
        if trader is None:
            continue
        if terms.type in (OperationType.REBALANCE, OperationType.LIQUIDATION):
            cash += trader.cash
            for asset in trader.holdings.held_assets:
                flows[asset] = flows.get(asset, ZERO) + trader.holdings.quantity(asset)
    return {
        asset: {"held": str(flows.get(asset, ZERO)), "net": str(net.get(asset, ZERO))}
        for asset in [*flows, *(a for a in net if a not in flows)]
    }, cash


def _signed(order: BlockOrder | None) -> Decimal:
    if order is None:
        return ZERO
    return order.quantity if order.side is Side.BUY else -order.quantity


def _add_totals(totals: dict[str, dict[str, Decimal]], legs: tuple[Leg, ...]) -> None:
    for leg in legs:
        moves = totals[leg.asset]
        if leg.side is Side.BUY:
            moves["bought"] += leg.quantity
            moves["paid"] += leg.notional
        else:
            moves["sold"] += leg.quantity
            moves["received"] += leg.notional
