"""Operation: one asynchronous request against a Strategy, and the barriers between its stages.

Lifecycle (spec §3.1): validating -> pricing -> settling -> settled | skipped | failed, plus
validating -> settled | skipped | failed when no Trader survives the checks (see
`_finish_without_trades`), and pricing -> failed when quotes cannot be had. An extension
(issue 19): validating | pricing -> cancelled when the platform cancels before the prices are
locked. Every transition is its own event, because each one is a webhook. The barriers are
here: pricing starts only once every chunk is checked, and the Operation ends only once every
chunk is settled (or, after a failure or a cancellation, released).

A cancellation is a failure with its own reason: `Failing` with `cancelled_by_platform`,
whose release tasks release every hold (and mark the chunks not checked yet cancelled), and
the last release ends the Operation `cancelled` instead of `failed`. It and `PricesLocked`
are both the Operation's next version, so the event store lets exactly one of them happen.
"""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.allocations import Allocations
from domain.errors import IllegalTransitionError, OperationNotCancellableError
from domain.statuses import OperationReason, OperationStatus, OperationType

_EDGES: dict[OperationStatus, set[OperationStatus]] = {
    OperationStatus.VALIDATING: {
        OperationStatus.PRICING,
        OperationStatus.SETTLED,  # nobody traded, some rejected and some skipped (§11.14)
        OperationStatus.SKIPPED,
        OperationStatus.FAILED,
        OperationStatus.CANCELLED,
    },
    OperationStatus.PRICING: {
        OperationStatus.SETTLING,
        OperationStatus.FAILED,
        OperationStatus.CANCELLED,
    },
    OperationStatus.SETTLING: {
        OperationStatus.SETTLED,
        OperationStatus.SKIPPED,
        OperationStatus.FAILED,
    },
}


class Operation(Aggregate):
    @staticmethod
    def create_id(platform_id: str, request_id: UUID) -> UUID:
        return ids.operation_id(platform_id, request_id)

    @event("Requested")
    def __init__(
        self,
        platform_id: str,
        strategy_id: UUID,
        request_id: UUID,
        type: str,
        quoted_currency: str,
        allocations: list[dict[str, str]] | None,
        parameters: dict[str, str],
        request_hash: str,
        participant_count: int,
        chunk_count: int,
        correlation_id: str | None = None,
        traceparent: str | None = None,
    ) -> None:
        """`correlation_id` and `traceparent` are the request's `domain.request_trace.RequestTrace`:
        recorded on the event for the relay to pass on with every stage task, read by no
        rule (so not kept on the aggregate); older histories have neither."""
        self.platform_id = platform_id
        self.strategy_id = strategy_id
        self.request_id = request_id
        self._type = OperationType(type).value
        self.quoted_currency = quoted_currency
        self.allocations = allocations
        self.parameters = parameters
        self.request_hash = request_hash
        self.participant_count = participant_count
        self.chunk_count = chunk_count
        self._status = OperationStatus.VALIDATING.value
        self._status_reason = OperationReason.NONE.value
        #: Stage per chunk, keyed by the index as a string: snapshots restore JSON, whose object
        #: keys are strings, so an int key would silently stop matching after a snapshot.
        self.chunks: dict[str, str] = {str(i): "planned" for i in range(chunk_count)}
        self.counts: dict[str, int] = {"approved": 0, "rejected": 0, "skipped": 0, "settled": 0}
        #: Per asset, price-independent sums over approved Traders (see `domain.pricing`).
        self.flows: dict[str, dict[str, str]] = {}
        self.cash_in_scope = Decimal(0)
        #: Per asset, what the Traders settled beyond the block fill: the house's rounding.
        self.residual: dict[str, str] = {}
        self.locked_prices: dict[str, dict[str, str]] = {}
        self.block_orders: dict[str, dict[str, str]] = {}
        self.fills: dict[str, dict[str, str]] = {}
        self.failure: str = ""
        self.failure_detail: str = ""
        self.ready_to_settle = False
        self.totals: dict[str, dict[str, str]] = {}
        self.float_moves: dict[str, str] = {"debit": "0", "credit": "0"}

    # Lifecycle names are stored as plain strings: snapshots restore JSON types, not enums.
    @property
    def type(self) -> OperationType:
        return OperationType(self._type)

    @property
    def status(self) -> OperationStatus:
        return OperationStatus(self._status)

    @property
    def status_reason(self) -> OperationReason:
        return OperationReason(self._status_reason)

    @property
    def allocation_set(self) -> Allocations | None:
        return Allocations.from_list(self.allocations) if self.allocations is not None else None

    # Attributes added after the first release: a snapshot taken before then restores an
    # Operation without them, so they are read with their default.
    @property
    def indicative_prices(self) -> dict[str, str]:
        return dict(getattr(self, "_indicative_prices", {}))

    @property
    def float_budgets(self) -> dict[str, str]:
        return dict(getattr(self, "_float_budgets", {}))

    @property
    def float_reserved(self) -> bool:
        return bool(getattr(self, "_reservation_made", False))

    @property
    def crossed(self) -> dict[str, dict[str, str]]:
        return dict(getattr(self, "_crossed", {}))

    @property
    def checked_net(self) -> dict[str, Decimal] | None:
        """Per asset, the net quantity of the approved Traders' legs at the indicative prices,
        summed from every chunk's check; None for an Operation checked before chunks recorded
        it. (One checked across the upgrade that added it sums only the later chunks: its
        first quotes are then sized short, and pricing asks again, one round more.)"""
        if not all("net" in flow for flow in self.flows.values()):
            return None
        return {asset: Decimal(flow["net"]) for asset, flow in self.flows.items()}

    @property
    def prices_for_check(self) -> dict[str, Decimal]:
        return {asset: Decimal(price) for asset, price in self.indicative_prices.items()}

    @property
    def deferred_float_moves(self) -> dict[int, tuple[Decimal, Decimal]]:
        """Per settled chunk, its float (debit, credit): the float account is written once,
        by the barrier that settles the last chunk, not by every chunk's barrier."""
        due: dict[str, dict[str, str]] = getattr(self, "_deferred_float_moves", {})
        return {
            int(index): (Decimal(moves["debit"]), Decimal(moves["credit"]))
            for index, moves in due.items()
        }

    def float_budget(self, index: int) -> Decimal:
        """What the float had left for chunk `index` when it was reserved in request order."""
        return Decimal(self.float_budgets.get(str(index), "0"))

    def record_empty(self) -> None:
        """An Operation with nobody in scope fails at once (spec §3.1: `no_executions`)."""
        if self.chunk_count == 0:
            self._finish_without_trades()

    # -- credit check -------------------------------------------------------------------
    def record_indicative_prices(self, prices: dict[str, str]) -> None:
        """The one set of indicative prices every chunk is checked at (the first offered wins:
        chunks checked in parallel must not each judge their Traders at a price of their own)."""
        if self.indicative_prices:
            return
        self._require(OperationStatus.VALIDATING)
        self._indicative_prices_recorded(prices)

    @event("IndicativePricesRecorded")
    def _indicative_prices_recorded(self, prices: dict[str, str]) -> None:
        self._indicative_prices = prices

    def record_chunk_checked(
        self,
        index: int,
        approved: int,
        rejected: int,
        skipped: int,
        flows: dict[str, dict[str, str]],
        cash: Decimal = Decimal(0),
    ) -> None:
        if self.chunk_stage(index) != "planned":
            raise IllegalTransitionError(f"chunk {index} of {self.id} is {self.chunk_stage(index)}")
        self._require(OperationStatus.VALIDATING)
        self._chunk_checked(
            index=index,
            approved=approved,
            rejected=rejected,
            skipped=skipped,
            flows=flows,
            cash=cash,
        )
        if self.all_chunks_are("checked"):
            self._after_checks()

    @event("ChunkChecked")
    def _chunk_checked(
        self,
        index: int,
        approved: int,
        rejected: int,
        skipped: int,
        flows: dict[str, dict[str, str]],
        cash: Decimal,
    ) -> None:
        self.chunks[str(index)] = "checked"
        self.counts["approved"] += approved
        self.counts["rejected"] += rejected
        self.counts["skipped"] += skipped
        self.cash_in_scope += cash
        for asset, flow in flows.items():
            mine = self.flows.setdefault(asset, {})
            for key, value in flow.items():
                mine[key] = str(Decimal(mine.get(key, "0")) + Decimal(value))

    def _after_checks(self) -> None:
        if self.failure:  # cancelled while being checked: its release tasks end it
            return
        if self.counts["approved"]:
            self._transition(OperationStatus.PRICING, OperationReason.NONE)
        else:
            self._finish_without_trades()

    # -- pricing ------------------------------------------------------------------------
    def reserve_float(self, budgets: dict[str, str], reserved: Decimal) -> None:
        """The float decision, made once for the whole Operation in request order (§11.12):
        `budgets` holds what the float had left at the start of each chunk, from which each
        chunk's settlement finds the same buyers approved (`domain.allotment`)."""
        self._require(OperationStatus.PRICING)
        if self.float_reserved or self.failure:
            return
        self._float_reserved(budgets, reserved)

    @event("FloatReserved")
    def _float_reserved(self, budgets: dict[str, str], reserved: Decimal) -> None:
        self._float_budgets = budgets
        self._reservation_made = True

    def lock_prices(
        self,
        prices: dict[str, dict[str, str]],
        block_orders: dict[str, dict[str, str]],
        crossed: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """`crossed`: assets whose Traders' buys and sells cross inside the venue's spread
        (no side's price gives a block on that side); they trade among the Traders at the
        venue's mid, no block is placed, and the house carries their small net."""
        self._require(OperationStatus.PRICING)
        if self.failure:
            raise IllegalTransitionError(f"operation {self.id} is failing: {self.failure}")
        if self.type.buys_from_float and not self.float_reserved:
            raise IllegalTransitionError(f"operation {self.id} has not reserved its float")
        missing = sorted(set(self.flows) - set(prices))
        if missing:
            raise IllegalTransitionError(f"no locked price for {', '.join(missing)}")
        self._prices_locked(prices, block_orders, crossed or {})
        self._transition(OperationStatus.SETTLING, OperationReason.NONE)
        if not block_orders:  # buys and sells cancelled out: nothing to place at the venue
            self._fills_completed(self.chunk_count)

    @event("PricesLocked")
    def _prices_locked(
        self,
        prices: dict[str, dict[str, str]],
        block_orders: dict[str, dict[str, str]],
        crossed: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.locked_prices = prices
        self.block_orders = block_orders
        self._crossed = crossed or {}

    @property
    def cancelled(self) -> bool:
        """Whether the platform cancelled it (it may still be releasing its chunks)."""
        return self.failure == OperationReason.CANCELLED_BY_PLATFORM.value

    def cancel(self, detail: str = "cancelled by the platform") -> None:
        """The platform's cancellation: allowed until the prices are locked (validating, or
        pricing before `PricesLocked`); again, a no-op. Nobody trades: every hold is released
        and every chunk not yet checked is marked cancelled, then the Operation ends
        `cancelled` (`cancelled_by_platform`)."""
        if self.cancelled:
            return
        if self.status not in (OperationStatus.VALIDATING, OperationStatus.PRICING) or (
            self.failure
        ):
            raise OperationNotCancellableError(
                f"operation {self.id} is {self.status.value}"
                + (f" ({self.failure})" if self.failure else "")
                + ": only an Operation whose prices are not locked yet can be cancelled"
            )
        self._failed(OperationReason.CANCELLED_BY_PLATFORM.value, detail, self.chunk_count)

    def fail(self, reason: OperationReason, detail: str) -> None:
        """Pricing or the venue failed: no Trader may trade; holds are released chunk by chunk."""
        if self.failure:
            return
        if self.status not in (OperationStatus.PRICING, OperationStatus.SETTLING):
            raise IllegalTransitionError(f"operation {self.id} cannot fail while {self.status}")
        if self.ready_to_settle:
            raise IllegalTransitionError(f"operation {self.id} is filled and settling")
        self._failed(reason.value, detail, self.chunk_count)

    @event("Failing")
    def _failed(self, reason: str, detail: str, chunk_count: int) -> None:
        self.failure = reason
        self.failure_detail = detail

    # -- execution ----------------------------------------------------------------------
    def record_fill(self, asset: str, fill: dict[str, str]) -> None:
        """A block's fill. One that is not what was ordered at the locked price (another
        price, side or quantity) is recorded, for the house keeps it, and fails the
        Operation: the Traders trade exactly their allotments at the locked price or not at
        all, never a share of a partial fill."""
        self._require(OperationStatus.SETTLING)
        order = self.block_orders.get(asset)
        if order is None:
            raise IllegalTransitionError(f"operation {self.id} placed no block order for {asset}")
        if asset in self.fills or self.failure:
            return
        self._block_filled(asset, fill)
        wrong = _fill_mismatch(order, self.locked_prices[asset], fill)
        if wrong:
            self._failed(
                OperationReason.EXECUTION_FAILED.value, f"{asset}: {wrong}", self.chunk_count
            )
        elif self.all_blocks_filled:
            self._fills_completed(self.chunk_count)

    @event("BlockFilled")
    def _block_filled(self, asset: str, fill: dict[str, str]) -> None:
        self.fills[asset] = fill

    @event("FillsCompleted")
    def _fills_completed(self, chunk_count: int) -> None:
        """The barrier before settlement: every block order is filled, chunks may settle.

        It carries the chunk count so that whoever derives the settle tasks needs no lookup.
        """
        self.ready_to_settle = True

    @property
    def all_blocks_filled(self) -> bool:
        return set(self.fills) >= set(self.block_orders)

    def record_chunk_settled(
        self,
        index: int,
        settled: int,
        skipped: int,
        totals: dict[str, dict[str, str]],
        float_debit: Decimal,
        float_credit: Decimal,
        rejected: int = 0,
    ) -> None:
        """`rejected`: Traders turned away at the locked price (a partial sell no longer
        covered) or by the float reservation; `skipped`: left with dust only."""
        self._require(OperationStatus.SETTLING)
        if self.failure or not self.ready_to_settle:
            raise IllegalTransitionError(f"operation {self.id} cannot settle chunks yet")
        if self.chunk_stage(index) != "checked":
            raise IllegalTransitionError(f"chunk {index} of {self.id} is {self.chunk_stage(index)}")
        self._chunk_settled(
            index,
            settled,
            skipped,
            totals,
            float_debit,
            float_credit,
            rejected,
            float_deferred=True,
        )
        if self.all_chunks_are("settled"):
            self._finish_after_settlement()

    @event("ChunkSettled")
    def _chunk_settled(
        self,
        index: int,
        settled: int,
        skipped: int,
        totals: dict[str, dict[str, str]],
        float_debit: Decimal,
        float_credit: Decimal,
        rejected: int = 0,
        float_deferred: bool = False,
    ) -> None:
        """`float_deferred`: the chunk's float moves wait for the Operation's end (see
        `deferred_float_moves`); False in histories written when each chunk settled the
        float itself, whose moves must not be paid again."""
        self.chunks[str(index)] = "settled"
        self.counts["settled"] += settled
        self.counts["skipped"] += skipped
        self.counts["rejected"] += rejected
        for asset, moves in totals.items():
            mine = self.totals.setdefault(asset, {})
            for key, value in moves.items():
                mine[key] = str(Decimal(mine.get(key, "0")) + Decimal(value))
        self.float_moves = {
            "debit": str(Decimal(self.float_moves["debit"]) + float_debit),
            "credit": str(Decimal(self.float_moves["credit"]) + float_credit),
        }
        if float_deferred:
            deferred = self.__dict__.setdefault("_deferred_float_moves", {})
            deferred[str(index)] = {"debit": str(float_debit), "credit": str(float_credit)}

    def record_chunk_released(self, index: int, released: int, cancelled: int = 0) -> None:
        """`released`: holds released (their Executions end rejected, or cancelled when the
        platform cancelled); `cancelled`: the chunk's participants never checked, marked
        cancelled."""
        if not self.failure:
            raise IllegalTransitionError(f"operation {self.id} is not failing")
        if self.chunk_stage(index) != "checked":
            raise IllegalTransitionError(f"chunk {index} of {self.id} is {self.chunk_stage(index)}")
        if self.cancelled:
            self._chunk_cancelled(index, released + cancelled)
        else:
            self._chunk_released(index, released)
        if self.all_chunks_are("released"):
            if self.fills:  # blocks filled before the failure stay with the house: record them
                self._reconciled(self._residual())
            if self.cancelled:
                self._transition(OperationStatus.CANCELLED, OperationReason.CANCELLED_BY_PLATFORM)
            else:
                self._transition(OperationStatus.FAILED, OperationReason(self.failure))

    @event("ChunkReleased")
    def _chunk_released(self, index: int, released: int) -> None:
        self.chunks[str(index)] = "released"
        self.counts["rejected"] += released

    @event("ChunkCancelled")
    def _chunk_cancelled(self, index: int, cancelled: int) -> None:
        self.chunks[str(index)] = "released"
        self.counts["cancelled"] = self.counts.get("cancelled", 0) + cancelled

    # -- endings ------------------------------------------------------------------------
    def _finish_without_trades(self) -> None:
        """Nobody traded (spec §3.1, §11.14): no Execution at all is a failure
        (`no_executions`), all rejected a failure, all skipped a skip, and a mix of rejected
        and skipped Executions is a mixed outcome, which §11.14 ends `settled` with
        `partial_success` (each Execution carries its own reason)."""
        counts = self.counts
        total = counts["rejected"] + counts["skipped"]
        if total == 0:
            self._transition(OperationStatus.FAILED, OperationReason.NO_EXECUTIONS)
        elif counts["rejected"] == total:
            self._transition(OperationStatus.FAILED, OperationReason.ALL_REJECTED)
        elif counts["skipped"] == total:
            self._transition(OperationStatus.SKIPPED, OperationReason.ALL_SKIPPED)
        else:
            self._transition(OperationStatus.SETTLED, OperationReason.PARTIAL_SUCCESS)

    def _finish_after_settlement(self) -> None:
        self._reconciled(self._residual())
        counts = self.counts
        if counts["settled"] == 0:
            self._finish_without_trades()
        elif counts["settled"] == self.participant_count:
            self._transition(OperationStatus.SETTLED, OperationReason.NONE)
        else:
            self._transition(OperationStatus.SETTLED, OperationReason.PARTIAL_SUCCESS)

    def _residual(self) -> dict[str, str]:
        """Traders' net settled quantity minus the block fill, per asset: what the house
        carries. Blocks are the Traders' exact net (`domain.allotment`), so it is zero but
        for a crossed asset (the Traders' small net at the mid) and, after a failure, the
        fills the house kept."""
        residual = {}
        for asset in sorted(set(self.totals) | set(self.fills)):
            moves = self.totals.get(asset, {})
            settled = Decimal(moves.get("bought", "0")) - Decimal(moves.get("sold", "0"))
            fill = self.fills.get(asset)
            filled = Decimal(fill["quantity"]) if fill else Decimal(0)
            if fill and fill["side"] == "sell":
                filled = -filled
            if settled != filled:
                residual[asset] = str(settled - filled)
        return residual

    @event("Reconciled")
    def _reconciled(self, residual: dict[str, str]) -> None:
        self.residual = residual

    def _transition(self, status: OperationStatus, reason: OperationReason) -> None:
        if status not in _EDGES.get(self.status, set()):
            raise IllegalTransitionError(f"operation {self.id}: {self.status} -> {status}")
        self._status_changed(status.value, reason.value)

    @event("StatusChanged")
    def _status_changed(self, status: str, reason: str) -> None:
        self._status = status
        self._status_reason = reason

    def chunk_stage(self, index: int) -> str | None:
        return self.chunks.get(str(index))

    def all_chunks_are(self, state: str) -> bool:
        return all(s == state for s in self.chunks.values())

    def _require(self, status: OperationStatus) -> None:
        if self.status is not status:
            raise IllegalTransitionError(f"operation {self.id} is {self.status}, not {status}")


def _fill_mismatch(order: dict[str, str], locked: dict[str, str], fill: dict[str, str]) -> str:
    """Why a fill is not the block order at the locked price, or "" when it is."""
    if Decimal(fill["price"]) != Decimal(locked["price"]):
        return f"filled at {fill['price']}, not at the locked price {locked['price']}"
    if fill["side"] != order["side"] or Decimal(fill["quantity"]) != Decimal(order["quantity"]):
        return (
            f"filled {fill['side']} {fill['quantity']}, "
            f"not the ordered {order['side']} {order['quantity']}"
        )
    return ""
