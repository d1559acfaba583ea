"""`strategies audit verify`: the domain's invariants, re-checked from the event store alone.

The checks are pure functions over an `OperationAudit`, a plain record of what the stored
events say about one terminal Operation: its own totals, fills, residual and float moves, the
decisions of its chunks, every Trader event that names it, and what is still held. Each check
returns `InvariantViolation`s instead of raising, so one run reports every broken rule.

Value conservation is checked by putting the Traders' side of every `Trader.Settled`
(`domain.ledger.settlement_postings`) against the counterparties' side as the Operation
recorded it (the venue: block fills plus residual per asset, paid minus received in fiat; the
float: its debits and credits): a forged or lost settlement leaves a unit that does not net to 0.

What the house carries is bounded too: blocks are the Traders' exact net, so a residual beyond
one precision unit per Trader of the asset is flagged, and a crossed asset's residual must be
the net recorded when it was crossed, between the nets seen at the bid and the ask. A partial
sell must have paid each settled Trader exactly the amount it asked for.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.chunk import OperationChunk, chunk_id
from domain.errors import InvariantViolation
from domain.float_account import FloatAccount, hold_prefix
from domain.ledger import (
    FLOAT,
    VENUE,
    Posting,
    check_balanced,
    check_non_negative,
    check_uniform_prices,
    settlement_postings,
    trader_account,
)
from domain.money import ZERO, exact, unit
from domain.operation import Operation
from domain.statuses import OperationType
from domain.trader import Trader

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from domain.services import Trading

REQUESTED_TOPIC = "domain.operation:Operation.Requested"
EXECUTION_EVENTS = ("HoldPlaced", "Settled", "HoldReleased")
MOVES = ("bought", "sold", "paid", "received")


@dataclass(frozen=True)
class ExecutionEvent:
    """One Trader event of the audited Operation: `kind` is HoldPlaced, Settled or HoldReleased."""

    kind: str
    version: int
    data: Mapping[str, Any]


@dataclass(frozen=True)
class TraderAudit:
    trader_id: UUID
    events: tuple[ExecutionEvent, ...] = ()
    held_by: UUID | None = None
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    cash: Decimal = ZERO

    @property
    def settlements(self) -> list[Mapping[str, Any]]:
        return [e.data for e in self.events if e.kind == "Settled"]


@dataclass(frozen=True)
class OperationAudit:
    operation_id: UUID
    currency: str
    locked_prices: Mapping[str, Decimal]
    fills: Mapping[str, Mapping[str, str]]
    residual: Mapping[str, str]
    totals: Mapping[str, Mapping[str, str]]
    float_moves: Mapping[str, str]
    traders: tuple[TraderAudit, ...]
    #: Traders rejected by the credit check (as the chunks' `Checked` decisions recorded them).
    rejected: tuple[UUID, ...] = ()
    #: The float account's settlements of this Operation's chunk holds: debit and credit.
    float_settled: Mapping[str, Decimal] = field(default_factory=dict)
    #: Float hold keys of this Operation still reserved.
    float_holds: tuple[str, ...] = ()
    #: Pricing or the venue failed: no Trader may have traded, and any block filled before
    #: the failure stays with the venue (the house), so fills are not the Traders' to match.
    failed: bool = False
    type: str = ""
    #: Assets crossed inside the spread: {"net", "net_at_bid", "net_at_ask"} each.
    crossed: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: Each asset's precision (decimals), for the residual's rounding bound.
    precisions: Mapping[str, int] = field(default_factory=dict)
    #: Per Trader, the amount its request asked for (partial sells must pay exactly that).
    amounts: Mapping[UUID, Decimal] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"operation {self.operation_id}"

    @property
    def ids(self) -> tuple[str, ...]:
        return (str(self.operation_id),)


# -- the checks (pure) ------------------------------------------------------------------------
def operation_postings(audit: OperationAudit) -> list[Posting]:
    """Traders' postings from their `Settled` events against the counterparties' records."""
    postings: list[Posting] = []
    for trader in audit.traders:
        account = trader_account(trader.trader_id)
        for settled in trader.settlements:
            postings += [
                p
                for p in settlement_postings(
                    trader.trader_id,
                    audit.currency,
                    settled["instructions"],
                    Decimal(settled["funded"]),
                    Decimal(settled["paid_out"]),
                )
                if p.account == account
            ]
    for asset in sorted(set(_fills(audit)) | set(_residual(audit))):
        venue_net = _signed_fill(_fills(audit).get(asset)) + Decimal(
            _residual(audit).get(asset, "0")
        )
        postings.append(Posting(VENUE, asset, -venue_net))
    for moves in audit.totals.values():
        fiat = Decimal(moves.get("paid", "0")) - Decimal(moves.get("received", "0"))
        postings.append(Posting(VENUE, audit.currency, fiat))
    debit, credit = (Decimal(audit.float_moves.get(k, "0")) for k in ("debit", "credit"))
    postings.append(Posting(FLOAT, audit.currency, credit - debit))
    return postings


def check_value_conserved(audit: OperationAudit) -> list[InvariantViolation]:
    return [
        InvariantViolation(v.rule, v.subject, v.detail, audit.ids)
        for v in check_balanced(audit.subject, operation_postings(audit))
    ]


def traders_totals(audit: OperationAudit) -> dict[str, dict[str, Decimal]]:
    """Per asset, what the Traders' `Settled` events bought, sold, paid and received."""
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: dict.fromkeys(MOVES, ZERO))
    for trader in audit.traders:
        for settled in trader.settlements:
            for instruction in settled["instructions"]:
                moves = totals[instruction["underlying_currency"]]
                buy = instruction["side"] == "buy"
                moves["bought" if buy else "sold"] += Decimal(instruction["quantity"])
                moves["paid" if buy else "received"] += Decimal(instruction["notional"])
    return dict(totals)


def check_totals(audit: OperationAudit) -> list[InvariantViolation]:
    """The Operation's `totals` equal the Traders' settled sums, per asset and move."""
    settled = traders_totals(audit)
    violations = []
    for asset in sorted(set(settled) | set(audit.totals)):
        for move in MOVES:
            recorded = Decimal(audit.totals.get(asset, {}).get(move, "0"))
            summed = settled.get(asset, {}).get(move, ZERO)
            if recorded != summed:
                violations.append(
                    InvariantViolation(
                        "totals_match",
                        audit.subject,
                        f"{asset} {move}: operation recorded {recorded}, traders settled {summed}",
                        audit.ids,
                    )
                )
    return violations


def check_float_moves(audit: OperationAudit) -> list[InvariantViolation]:
    """`float_moves` equal the Traders' funded/paid-out sums and the float's own settlements."""
    funded = sum((Decimal(s["funded"]) for t in audit.traders for s in t.settlements), ZERO)
    paid_out = sum((Decimal(s["paid_out"]) for t in audit.traders for s in t.settlements), ZERO)
    violations = []
    for key, traders_sum in (("debit", funded), ("credit", paid_out)):
        recorded = Decimal(audit.float_moves.get(key, "0"))
        float_sum = audit.float_settled.get(key, ZERO)
        if recorded != traders_sum or recorded != float_sum:
            violations.append(
                InvariantViolation(
                    "float_moves_match",
                    audit.subject,
                    f"float {key}: operation recorded {recorded}, traders {traders_sum}, "
                    f"float account {float_sum}",
                    audit.ids,
                )
            )
    return violations


def check_fills(audit: OperationAudit) -> list[InvariantViolation]:
    """Block fill plus the recorded residual equals the Traders' net quantity, per asset."""
    settled = traders_totals(audit)
    violations = []
    for asset in sorted(set(settled) | set(_fills(audit)) | set(_residual(audit))):
        moves = settled.get(asset, {})
        net = moves.get("bought", ZERO) - moves.get("sold", ZERO)
        fill = _signed_fill(_fills(audit).get(asset))
        residual = Decimal(_residual(audit).get(asset, "0"))
        if fill + residual != net:
            violations.append(
                InvariantViolation(
                    "fills_match",
                    audit.subject,
                    f"{asset}: fill {fill} + residual {residual} != traders' net {net}",
                    audit.ids,
                )
            )
    return violations


def check_residual_bounded(audit: OperationAudit) -> list[InvariantViolation]:
    """What the house carries: at most one precision unit per Trader trading the asset (the
    blocks are the Traders' exact net, so normally nothing); for a crossed asset exactly the
    net recorded at the lock, which lies between the nets seen at the bid and the ask."""
    traded: dict[str, int] = defaultdict(int)
    for trader in audit.traders:
        for asset in {
            i["underlying_currency"] for s in trader.settlements for i in s["instructions"]
        }:
            traded[asset] += 1
    violations = []
    for asset, recorded in sorted(_residual(audit).items()):
        residual = Decimal(recorded)
        crossed = audit.crossed.get(asset)
        if crossed is not None:
            net, low, high = (Decimal(crossed[k]) for k in ("net", "net_at_ask", "net_at_bid"))
            if residual != net or not low <= net <= high:
                detail = f"{asset}: residual {residual}, crossed net {net} (ask {low}, bid {high})"
                violations.append(
                    InvariantViolation("crossed_residual", audit.subject, detail, audit.ids)
                )
            continue
        bound = traded[asset] * unit(audit.precisions.get(asset, 0))
        if abs(residual) > bound:
            detail = (
                f"{asset}: the house carries {residual}, beyond one precision unit for each of "
                f"the {traded[asset]} traders ({bound})"
            )
            violations.append(
                InvariantViolation("residual_bounded", audit.subject, detail, audit.ids)
            )
    return violations


def check_partial_sells_paid_exactly(audit: OperationAudit) -> list[InvariantViolation]:
    """A settled partial sell paid its Trader the amount asked, not a unit more or less."""
    if audit.type != OperationType.PARTIAL_SELL.value:
        return []
    return [
        InvariantViolation(
            "paid_as_asked",
            audit.subject,
            f"trader {t.trader_id} was paid {s['paid_out']}, "
            f"not the {audit.amounts.get(t.trader_id)} it asked for",
            (*audit.ids, str(t.trader_id)),
        )
        for t in audit.traders
        for s in t.settlements
        if Decimal(s["paid_out"]) != audit.amounts.get(t.trader_id)
    ]


def check_failed_untraded(audit: OperationAudit) -> list[InvariantViolation]:
    """A failed Operation changed no Trader: every hold it placed was released, none settled."""
    if not audit.failed:
        return []
    return [
        InvariantViolation(
            "failed_untraded",
            audit.subject,
            f"trader {t.trader_id} settled in a failed operation",
            (*audit.ids, str(t.trader_id)),
        )
        for t in audit.traders
        if t.settlements
    ]


def check_prices(audit: OperationAudit) -> list[InvariantViolation]:
    by_trader = {
        str(t.trader_id): [i for s in t.settlements for i in s["instructions"]]
        for t in audit.traders
    }
    return [
        InvariantViolation(v.rule, v.subject, v.detail, (*audit.ids, *v.ids))
        for v in check_uniform_prices(audit.subject, audit.locked_prices, by_trader)
    ]


def check_rejected_unchanged(audit: OperationAudit) -> list[InvariantViolation]:
    """A Trader the credit check rejected has no hold and no settlement for this Operation."""
    touched = {t.trader_id: t for t in audit.traders if t.events}
    return [
        InvariantViolation(
            "rejected_unchanged",
            audit.subject,
            f"rejected trader {trader_id} has "
            + ", ".join(f"{e.kind} v{e.version}" for e in touched[trader_id].events),
            (*audit.ids, str(trader_id)),
        )
        for trader_id in audit.rejected
        if trader_id in touched
    ]


def check_executions_closed(audit: OperationAudit) -> list[InvariantViolation]:
    """Every `HoldPlaced` is followed by exactly one `Settled` or `HoldReleased`."""
    violations = []
    for trader in audit.traders:
        problems, open_hold = [], False
        for event in trader.events:
            if event.kind == "HoldPlaced":
                if open_hold:
                    problems.append(f"HoldPlaced v{event.version} while a hold is open")
                open_hold = True
            elif not open_hold:
                problems.append(f"{event.kind} v{event.version} closes no open hold")
            else:
                open_hold = False
        if open_hold:
            problems.append("its execution was never closed")
        violations += [
            InvariantViolation(
                "execution_closed",
                audit.subject,
                f"trader {trader.trader_id}: {problem}",
                (*audit.ids, str(trader.trader_id)),
            )
            for problem in problems
        ]
    return violations


def check_holds_released(audit: OperationAudit) -> list[InvariantViolation]:
    violations = [
        InvariantViolation(
            "hold_released",
            audit.subject,
            f"trader {t.trader_id} is still held by the operation",
            (*audit.ids, str(t.trader_id)),
        )
        for t in audit.traders
        if t.held_by == audit.operation_id
    ]
    violations += [
        InvariantViolation(
            "hold_released", audit.subject, f"float hold {key} is still reserved", audit.ids
        )
        for key in audit.float_holds
    ]
    return violations


def check_balances(audit: OperationAudit) -> list[InvariantViolation]:
    return [
        InvariantViolation(v.rule, f"trader {t.trader_id}", v.detail, (str(t.trader_id),))
        for t in audit.traders
        for v in check_non_negative(f"trader {t.trader_id}", t.positions, t.cash)
    ]


CHECKS = (
    check_value_conserved,
    check_totals,
    check_float_moves,
    check_fills,
    check_residual_bounded,
    check_partial_sells_paid_exactly,
    check_failed_untraded,
    check_prices,
    check_rejected_unchanged,
    check_executions_closed,
    check_holds_released,
    check_balances,
)


@exact
def verify_operation(audit: OperationAudit) -> list[InvariantViolation]:
    return [violation for check in CHECKS for violation in check(audit)]


def describe(violation: InvariantViolation) -> str:
    ids = f" [{', '.join(violation.ids)}]" if violation.ids else ""
    return f"{violation.rule}: {violation.subject}: {violation.detail}{ids}"


def _fills(audit: OperationAudit) -> Mapping[str, Mapping[str, str]]:
    return {} if audit.failed else audit.fills


def _residual(audit: OperationAudit) -> Mapping[str, str]:
    """A failed Operation's residual is minus the fill the house kept: both stay with the
    venue, so neither is the Traders' to match (they net to nothing)."""
    return {} if audit.failed else audit.residual


def _signed_fill(fill: Mapping[str, str] | None) -> Decimal:
    if not fill:
        return ZERO
    quantity = Decimal(fill["quantity"])
    return -quantity if fill["side"] == "sell" else quantity


# -- the loader -------------------------------------------------------------------------------
def operation_ids(trading: Trading, batch: int = 1000) -> Iterator[UUID]:
    """Every Operation in the store, in log order (a topic-filtered read of the log)."""
    start = 1
    while notifications := trading.recorder.select_notifications(
        start=start, limit=batch, topics=(REQUESTED_TOPIC,)
    ):
        yield from (UUID(str(n.originator_id)) for n in notifications)
        start = notifications[-1].id + 1


class AuditLoader:
    """Reads what the checks need for one Operation; float histories are read once per run."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading
        self._floats: dict[UUID, list[Any]] = {}

    def operation(self, operation_id: UUID) -> Operation | None:
        return self.trading.find(operation_id, Operation)

    def load(self, operation: Operation) -> OperationAudit:
        op_id = operation.id
        chunk_ids = [chunk_id(op_id, i) for i in range(operation.chunk_count)]
        chunks = self.trading.get_many(chunk_ids)
        trader_ids = sorted(
            {
                UUID(d["trader_id"])
                for c in chunks.values()
                if isinstance(c, OperationChunk)
                for d in c.decisions.values()
                if d.get("trader_id")
            }
        )
        loaded = self.trading.get_many(trader_ids)
        traders = tuple(self._trader(op_id, t, loaded.get(t)) for t in trader_ids if t in loaded)
        float_id = FloatAccount.create_id(operation.platform_id, operation.quoted_currency)
        float_settled, float_holds = self._float(float_id, op_id)
        catalogue = self.trading.catalogue()
        amounts = {
            UUID(d["trader_id"]): order.amount
            for c in chunks.values()
            if isinstance(c, OperationChunk)
            for order in c.participant_orders
            if order.amount is not None
            for d in [c.decisions.get(order.code, {})]
            if d.get("trader_id")
        }
        return OperationAudit(
            operation_id=op_id,
            currency=operation.quoted_currency,
            locked_prices={a: Decimal(q["price"]) for a, q in operation.locked_prices.items()},
            fills=operation.fills,
            residual=operation.residual,
            totals=operation.totals,
            float_moves=operation.float_moves,
            traders=traders,
            rejected=tuple(self._rejected(chunk_ids)),
            float_settled=float_settled,
            float_holds=float_holds,
            failed=bool(operation.failure),
            type=operation.type.value,
            crossed=operation.crossed,
            precisions={
                asset: catalogue.precision(asset, operation.quoted_currency)
                for asset in set(operation.totals) | set(operation.residual)
            },
            amounts=amounts,
        )

    def _trader(self, op_id: UUID, trader_id: UUID, trader: Trader | None) -> TraderAudit:
        events = [
            ExecutionEvent(_kind(e), e.originator_version, vars(e))
            for e in history(self.trading, trader_id)
            if _kind(e) in EXECUTION_EVENTS and getattr(e, "operation_id", None) == op_id
        ]
        return TraderAudit(
            trader_id,
            tuple(events),
            trader.held_by if trader else None,
            dict(trader.positions) if trader else {},
            trader.cash if trader else ZERO,
        )

    def _rejected(self, chunk_ids: Iterable[UUID]) -> Iterator[UUID]:
        for cid in chunk_ids:
            for event in history(self.trading, cid):
                if _kind(event) == "Checked":
                    for decision in event.decisions:
                        if decision["outcome"] == "rejected" and decision.get("trader_id"):
                            yield UUID(decision["trader_id"])

    def _float(self, float_id: UUID, op_id: UUID) -> tuple[dict[str, Decimal], tuple[str, ...]]:
        if float_id not in self._floats:
            self._floats[float_id] = list(history(self.trading, float_id))
        return float_of(self._floats[float_id], op_id)


def float_of(events: Iterable[Any], op_id: UUID) -> tuple[dict[str, Decimal], tuple[str, ...]]:
    """What a float account's history says of one Operation: the debits and credits it
    settled, and the hold keys still reserved. Operations settle (or release) the float once,
    at their end (`OperationSettled`, `OperationReleased`); older histories hold one
    `Settled` or `Released` per chunk (and `Held` per chunk before `Reserved`)."""
    prefix = hold_prefix(op_id)
    settled = {"debit": ZERO, "credit": ZERO}
    holds: set[str] = set()
    for event in events:
        kind = _kind(event)
        if kind == "OperationSettled" and event.operation_id == op_id:
            holds.difference_update(event.debits)
            settled["debit"] += sum(event.debits.values(), ZERO)
            settled["credit"] += sum(event.credits.values(), ZERO)
        elif kind == "OperationReleased" and event.operation_id == op_id:
            holds.difference_update(event.keys)
        elif kind == "Reserved":  # one event holding every chunk of an Operation
            holds.update(k for k in event.holds if k.startswith(prefix))
        elif getattr(event, "key", "").startswith(prefix):  # one event per chunk
            if kind == "Held":
                holds.add(event.key)
                continue
            holds.discard(event.key)  # Settled or Released
            if kind == "Settled":
                settled["debit"] += event.debit
                settled["credit"] += event.credit
    return settled, tuple(sorted(holds))


def history(trading: Trading, aggregate_id: UUID) -> list[Any]:
    """An aggregate's events in version order, as the domain classes that recorded them."""
    return list(trading.events.get(aggregate_id))


def _kind(event: Any) -> str:
    return type(event).__qualname__.rpartition(".")[2]


@exact
def verify(
    trading: Trading, operation_id: UUID | None = None
) -> tuple[int, list[InvariantViolation]]:
    """Check one Operation or every terminal one; returns (how many checked, violations)."""
    loader = AuditLoader(trading)
    wanted = [operation_id] if operation_id is not None else operation_ids(trading)
    checked, violations = 0, []
    for op_id in wanted:
        operation = loader.operation(op_id)
        if operation is None:
            violations.append(
                InvariantViolation("operation_exists", f"operation {op_id}", "no such operation")
            )
            continue
        if not operation.status.terminal:
            if operation_id is not None:
                violations.append(
                    InvariantViolation(
                        "operation_terminal",
                        f"operation {op_id}",
                        f"is {operation.status}: only terminal operations can be audited",
                        (str(op_id),),
                    )
                )
            continue
        checked += 1
        violations += verify_operation(loader.load(operation))
    return checked, violations
