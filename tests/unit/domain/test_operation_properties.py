"""Properties of whole Operations run through `Trading`, chunk by chunk, as the workers will.

Every example builds its world by calling commands only: list the instruments (each asset at
a precision of 0, 8 or 18 decimals), register participants (some never registered, some
suspended), fund the float (sometimes too little), enroll, then a random sequence of top-ups,
partial sells, rebalances, liquidations and re-enrollments, each priced at an indicative price
and locked up to 10% away, some of them failing at pricing or at execution. Partial sells are
aimed at what the Traders hold: the assets they were enrolled in, for up to the worth they
were enrolled with, so that a price falling between check and lock really takes some of them
below their amount. An `Audit` keeps what each Operation decided and the Traders before it
ran, so each property is checked Operation by Operation against the state it started from.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, localcontext
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import hypothesis
from eventsourcing.application import project_aggregate
from eventsourcing.domain import Aggregate
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

from domain import ids
from domain.calculators import Market, partial_sell_plan
from domain.catalogue import Instrument
from domain.chunk import OperationChunk, chunk_id
from domain.credit import OperationTerms, planned_legs
from domain.eligibility import ParticipantStatus
from domain.float_account import FloatAccount
from domain.ledger import (
    FLOAT,
    VENUE,
    balances,
    check_non_negative,
    check_uniform_prices,
    imbalances,
    settlement_postings,
)
from domain.legs import Holdings, Leg
from domain.money import floor_to
from domain.operation import Operation
from domain.pricing import BlockFill
from domain.requests import ParticipantOrder
from domain.services import Trading
from domain.stages import operation_prices, operation_terms
from domain.statuses import (
    OperationReason,
    OperationStatus,
    OperationType,
    Side,
    TraderStatus,
)
from domain.trader import Trader
from tests.unit.domain.flows import fitting_quotes
from tests.unit.domain.strategies import (
    ASSETS,
    ELIGIBLE,
    QUOTED,
    SUSPENDED,
    UNREGISTERED,
    Entrant,
    allocation_bodies,
    moved_prices,
    on_grid,
    participant_batches,
    participant_codes,
    price_sets,
    prices,
    rebalance_slack,
    rebalance_targets,
)

PLATFORM = "platform-props"
ZERO = Decimal(0)
WHOLE_RUNS = settings(max_examples=15, deadline=None)
SHORT_RUNS = settings(max_examples=20, deadline=None)


# -- the world: a Trading application driven by commands --------------------------------


class RecordingTrading(Trading):
    """`Trading` that remembers, per aggregate, the state its commands left at each save.

    Replaying an aggregate's stored events must rebuild exactly this state; a command that
    changed state outside its event, or an event body that is not deterministic, would not.
    """

    def __init__(self, *, chunk_size: int) -> None:
        super().__init__(chunk_size=chunk_size)
        self.saved: dict[UUID, dict[str, Any]] = {}

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        changed = [o for o in objs if isinstance(o, Aggregate) and o.pending_events]
        recordings = super().save(*objs, **kwargs)
        for aggregate in changed:
            self.saved[aggregate.id] = copy.deepcopy(aggregate.__dict__)
        return recordings


@dataclass(frozen=True)
class TraderState:
    version: int
    status: TraderStatus
    positions: dict[str, Decimal]
    cash: Decimal
    held_by: UUID | None

    @property
    def holdings(self) -> Holdings:
        return Holdings(dict(self.positions), self.cash)


@dataclass(frozen=True)
class Step:
    kind: OperationType
    body: dict[str, Any]
    indicative: dict[str, Decimal]
    locked: dict[str, Decimal]
    failure: OperationReason | None = None
    #: Paid into the float just before the Operation is requested.
    deposit: Decimal = ZERO
    #: A partial sell aimed at what its Traders hold when it runs: per participant, the share
    #: of the most it could sell at indicative prices (its body is built then, see `World`).
    sell_fractions: tuple[tuple[str, Decimal], ...] = ()


@dataclass
class Audit:
    """What one Operation did, captured while it ran."""

    step: Step
    operation: Operation
    orders: list[ParticipantOrder]
    decisions: dict[str, dict[str, Any]]
    before: dict[str, TraderState | None]
    float_balance_before: Decimal
    reached_pricing: bool
    #: Per participant, the chunk's decision once the Operation ended (settled/skipped/...).
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the float had available when pricing reserved it (another Operation may have
    #: drawn on it between this one's check and its pricing).
    float_at_reservation: Decimal | None = None


DEFAULT_PRECISIONS = dict.fromkeys(ASSETS, 8)


@dataclass
class World:
    entrants: list[Entrant]
    chunk_size: int
    #: Deliver every stage twice, as an at-least-once queue may: the second must be a no-op.
    redeliver: bool = False
    #: Each asset's precision in this world's catalogue.
    precisions: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PRECISIONS))
    app: RecordingTrading = field(init=False)
    strategy_id: UUID = field(init=False)
    deposits: Decimal = ZERO
    wires: int = 0
    codes: set[str] = field(default_factory=set)
    audits: list[Audit] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        self.app = RecordingTrading(chunk_size=self.chunk_size)
        self.app.ensure_default_catalogue()
        self.app.list_instruments(
            [Instrument(a, QUOTED, p, Decimal("1.00")) for a, p in self.precisions.items()]
        )
        active = [e.code for e in self.entrants if e.eligibility == ELIGIBLE]
        suspended = [e.code for e in self.entrants if e.eligibility == SUSPENDED]
        self.app.register_participants(PLATFORM, active)
        self.app.register_participants(PLATFORM, suspended, ParticipantStatus.SUSPENDED)
        strategy, _ = self.app.create_strategy(
            PLATFORM, self._request_id(), {"quoted_currency": QUOTED}
        )
        self.strategy_id = strategy.id
        self.codes.update(e.code for e in self.entrants)

    def _request_id(self) -> UUID:
        self.requests += 1
        return uuid5(NAMESPACE_URL, f"request-{self.requests}")

    def deposit(self, amount: Decimal) -> None:
        if amount > 0:
            # a reference per wire: the reference is the deposit's idempotency key
            self.wires += 1
            self.app.deposit_float(PLATFORM, QUOTED, amount, f"PLATFORM-FLOAT-{self.wires}")
            self.deposits += amount

    def float_account(self) -> FloatAccount:
        return self.app._float(PLATFORM, QUOTED)

    def trader(self, code: str) -> Trader | None:
        return self.app.find(ids.trader_id(self.strategy_id, code), Trader)

    def traders(self) -> dict[str, Trader]:
        found = {code: self.trader(code) for code in sorted(self.codes)}
        return {code: trader for code, trader in found.items() if trader is not None}

    def state(self, code: str) -> TraderState | None:
        trader = self.trader(code)
        if trader is None:
            return None
        return TraderState(
            trader.version, trader.status, dict(trader.positions), trader.cash, trader.held_by
        )

    def run(self, step: Step) -> Audit:
        """Request `step` and take it to its end, as the pipeline would."""
        return self.finish(self.begin(step))

    def begin(self, step: Step) -> Audit:
        """Request `step` and check every chunk (the Traders it approves are now held)."""
        app = self.app
        self.deposit(step.deposit)
        if step.sell_fractions:
            step = replace(step, body=self._aimed_sell(step))
        operation, created = app.request_operation(
            PLATFORM, self.strategy_id, self._request_id(), step.kind, step.body
        )
        assert created
        chunks = [self._chunk(operation.id, i) for i in range(operation.chunk_count)]
        orders = [order for chunk in chunks for order in chunk.participant_orders]
        self.codes.update(order.code for order in orders)
        float_before = self.float_account()
        before = {code: self.state(code) for code in sorted(self.codes)}
        decisions: dict[str, dict[str, Any]] = {}
        for _ in self._deliveries():
            app.record_indicative_prices(operation.id, step.indicative)
        for index in range(operation.chunk_count):
            app.check_chunk(operation.id, index)
            decisions.update(copy.deepcopy(self._chunk(operation.id, index).decisions))
        for index in self._redelivered(operation.chunk_count):
            assert app.check_chunk(operation.id, index).replayed
        operation = app.operation(operation.id)
        return Audit(
            step,
            operation,
            orders,
            decisions,
            before,
            float_before.balance,
            operation.status is OperationStatus.PRICING,
        )

    def finish(self, audit: Audit) -> Audit:
        """Lock, fill and settle (or fail and release) an Operation `begin` checked."""
        if audit.reached_pricing:
            self._price_and_settle(audit)
        audit.operation = operation = self.app.operation(audit.operation.id)
        for index in range(operation.chunk_count):
            audit.outcomes.update(copy.deepcopy(self._chunk(operation.id, index).decisions))
        self.audits.append(audit)
        outcome = (
            f"{audit.step.kind.value}: {operation.status.value} {operation.status_reason.value}"
        )
        note(f"{outcome} {operation.counts}")
        hypothesis.event(outcome)
        return audit

    def _price_and_settle(self, audit: Audit) -> None:
        app, operation, step = self.app, audit.operation, audit.step
        audit.float_at_reservation = self.float_account().available
        if step.failure is OperationReason.PRICING_FAILED:
            self._fail(operation, step.failure)
            return
        for _ in self._deliveries():
            app.reserve_float(operation.id)
        quotes = fitting_quotes(app, operation.id, step.locked)
        for _ in self._deliveries():
            app.lock_prices(operation.id, quotes)
        blocks = list(app.operation(operation.id).block_orders.items())
        refused = step.failure is OperationReason.EXECUTION_FAILED and blocks
        for asset, order in blocks[:-1] if refused else blocks:
            fill = BlockFill(
                asset, Side(order["side"]), Decimal(order["quantity"]), step.locked[asset], "fill"
            )
            for _ in self._deliveries():
                app.record_fill(operation.id, fill)
        if refused:  # the venue refused the last block: the Operation cannot go on
            self._fail(operation, OperationReason.EXECUTION_FAILED)
            return
        for index in range(operation.chunk_count):
            app.settle_chunk(operation.id, index)
        for index in self._redelivered(operation.chunk_count):
            assert app.settle_chunk(operation.id, index).replayed

    def _fail(self, operation: Operation, reason: OperationReason) -> None:
        for _ in self._deliveries():
            self.app.fail_operation(operation.id, reason, "venue unavailable")
        for index in range(operation.chunk_count):
            self.app.release_chunk(operation.id, index)
        for index in self._redelivered(operation.chunk_count):
            assert self.app.release_chunk(operation.id, index).replayed

    def _aimed_sell(self, step: Step) -> dict[str, Any]:
        """A partial sell at the weights of the first chosen Trader's holdings (at indicative
        prices), each participant asking `fraction` of the most it can cover at them: up to
        everything at steady prices, so a lock up to 10% lower turns some of them away."""
        prices = step.indicative
        worths = []
        for code, _ in step.sell_fractions:
            trader = self.trader(code)
            held = trader.positions if trader is not None else {}
            worths.append({a: q * prices[a] for a, q in held.items() if q * prices[a] >= 1})
        weights = basis_points(next((w for w in worths if w), {"BTC": Decimal(1)}))
        participants = []
        for (code, fraction), worth in zip(step.sell_fractions, worths, strict=True):
            most = min((worth.get(a, ZERO) / w for a, w in weights.items()), default=ZERO)
            amount = max(Decimal("0.01"), floor_to(most * fraction, 2))
            participants.append({"participant_code": code, "amount": str(amount)})
        allocations = [{"underlying_currency": a, "weight": str(w)} for a, w in weights.items()]
        return {"allocations": allocations, "participants": participants}

    def _deliveries(self) -> range:
        """How many times the queue delivers a single-shot command: twice when redelivering."""
        return range(2 if self.redeliver else 1)

    def _redelivered(self, chunk_count: int) -> range:
        """The chunks whose stage a redelivering queue sends once more, after the stage ran."""
        return range(chunk_count if self.redeliver else 0)

    def _chunk(self, operation_id: UUID, index: int) -> OperationChunk:
        chunk = self.app.find(chunk_id(operation_id, index), OperationChunk)
        assert chunk is not None
        return chunk

    def new_events(self, code: str, since: TraderState | None) -> list[Any]:
        version = since.version if since else 0
        return list(self.app.events.get(ids.trader_id(self.strategy_id, code), gt=version))

    def settled_events(self, operation_id: UUID) -> dict[str, Any]:
        """Per participant code, the Trader's `Settled` event for `operation_id`."""
        found = {}
        for code in sorted(self.codes):
            for event in self.app.events.get(ids.trader_id(self.strategy_id, code)):
                if kind_of(event) == "Settled" and vars(event)["operation_id"] == operation_id:
                    found[code] = event
        return found


def basis_points(worth: dict[str, Decimal]) -> dict[str, Decimal]:
    """Weights proportional to `worth`, in whole basis points (each at least 1) summing to 1."""
    total = sum(worth.values(), ZERO)
    points = {a: max(1, int(v / total * 10_000)) for a, v in sorted(worth.items())}
    largest = max(points, key=lambda a: points[a])
    points[largest] += 10_000 - sum(points.values())
    return {a: Decimal(p).scaleb(-4) for a, p in points.items() if p > 0}


def kind_of(event: Any) -> str:
    return str(type(event).__name__)


def locked_market(world: World, audit: Audit) -> Market:
    return Market(QUOTED, 2, world.app.catalogue(), operation_prices(audit.operation))


def terms_of(audit: Audit) -> OperationTerms:
    return operation_terms(audit.operation)


def legs_of(event: Any) -> list[dict[str, str]]:
    return [
        {k: v for k, v in instruction.items() if k != "price"}
        for instruction in vars(event)["instructions"]
    ]


# -- scenarios --------------------------------------------------------------------------

FAILURES = st.sampled_from(
    [None] * 6 + [OperationReason.PRICING_FAILED, OperationReason.EXECUTION_FAILED]
)


@dataclass(frozen=True)
class Lifecycle:
    entrants: list[Entrant]
    chunk_size: int
    float_deposit: Decimal
    steps: list[Step]
    redeliver: bool = False
    precisions: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PRECISIONS))

    def world(self) -> World:
        world = World(self.entrants, self.chunk_size, self.redeliver, dict(self.precisions))
        world.deposit(self.float_deposit)
        return world


def precisions() -> st.SearchStrategy[dict[str, int]]:
    """Each asset at 0, 8 or 18 decimals: whole units, the usual grid, the finest we list."""
    return st.fixed_dictionaries({asset: st.sampled_from([0, 8, 18]) for asset in ASSETS})


@st.composite
def world_prices(draw: st.DrawFn, precision: dict[str, int]) -> dict[str, Decimal]:
    """Prices an amount of a few thousand can buy: an asset of whole units costs at most 500
    (at 200,000 a unit every leg would be dust and nothing would trade)."""
    return {
        asset: draw(on_grid("0.01", "500.00", 2) if places == 0 else prices())
        for asset, places in precision.items()
    }


def float_deposits(
    entrants: Sequence[Entrant], *, tight: bool = False
) -> st.SearchStrategy[Decimal]:
    """A share of what the enrollment asks: ample by default, often too little when `tight`."""
    total = sum((e.amount for e in entrants), ZERO)
    shares = ["0", "0.3", "0.6", "0.9", "1", "2"] if tight else ["0.7", "1", "2", "3", "3"]
    return st.sampled_from(shares).map(lambda r: (total * Decimal(r)).quantize(Decimal("0.01")))


@st.composite
def some_of(draw: st.DrawFn, entrants: Sequence[Entrant]) -> list[Entrant]:
    chosen = draw(st.lists(st.sampled_from(list(entrants)), unique_by=lambda e: e.code))
    return chosen or list(entrants[:1])


@st.composite
def strangers(draw: st.DrawFn, entrants: Sequence[Entrant]) -> list[str]:
    """Codes nobody enrolled: they must be turned away as `trader_not_found`."""
    known = {e.code for e in entrants}
    return [c for c in draw(st.lists(participant_codes(), max_size=1)) if c not in known]


@st.composite
def next_step(
    draw: st.DrawFn,
    kind: OperationType,
    entrants: Sequence[Entrant],
    prices: dict[str, Decimal],
    held: Sequence[dict[str, str]] = (),
) -> Step:
    """`held`: the allocations the entrants were enrolled with, which partial sells aim at."""
    indicative = draw(moved_prices(prices))
    locked = draw(moved_prices(indicative))
    failure = draw(FAILURES)
    chosen = draw(some_of(entrants))
    others = draw(strangers(entrants))
    body: dict[str, Any]
    if kind is OperationType.ENROLLMENT:
        body = {
            "allocations": draw(allocation_bodies()),
            "participants": [e.funded() for e in chosen],
        }
    elif kind is OperationType.TOP_UP:
        participants = [e.funded(draw(on_grid("1.00", "3000.00", 2))) for e in chosen]
        participants += [{"participant_code": c, "amount": "10.00"} for c in others]
        body = {"allocations": draw(allocation_bodies()), "participants": participants}
    elif kind is OperationType.PARTIAL_SELL:
        # Aimed when it runs (`World._aimed_sell`): a share of what each Trader can cover,
        # often nearly all of it, so a price falling before the lock takes some below it.
        shares = st.one_of(st.just(Decimal("0.99")), on_grid("0.05", "0.99", 2))
        sellers = [e for e in chosen if e.eligibility == ELIGIBLE] or chosen
        fractions = tuple((e.code, draw(shares)) for e in sellers)
        body = {"allocations": list(held), "participants": []}
        return Step(kind, body, indicative, locked, failure, sell_fractions=fractions)
    elif kind is OperationType.REBALANCE:
        body = {"allocations": draw(allocation_bodies())}
        if draw(st.booleans()):
            pass  # names nobody: every active auto-rebalance Trader (the roster)
        else:
            body["participants"] = [e.code for e in chosen] + others
    else:
        if draw(st.booleans()):
            body = {"all": True}
        else:
            body = {
                "participants": [{"participant_code": c} for c in [e.code for e in chosen] + others]
            }
    return Step(kind, body, indicative, locked, failure)


@st.composite
def lifecycles(
    draw: st.DrawFn,
    then: Sequence[OperationType] | None = None,
    min_size: int = 2,
    max_size: int = 6,
    tight_float: bool = False,
) -> Lifecycle:
    """An enrollment of a batch, then `then` (or 1..4 random Operations) on its Traders."""
    entrants = draw(participant_batches(min_size, max_size))
    precision = draw(precisions())
    prices = draw(world_prices(precision))
    enrollment = draw(next_step(OperationType.ENROLLMENT, entrants, prices))
    everyone = [e.funded() for e in entrants]
    enrollment = replace(
        enrollment, body={**enrollment.body, "participants": everyone}, failure=None
    )
    kinds = then
    if kinds is None:
        kinds = draw(
            st.lists(
                st.sampled_from(
                    [
                        OperationType.TOP_UP,
                        OperationType.PARTIAL_SELL,
                        OperationType.REBALANCE,
                        OperationType.LIQUIDATION,
                        OperationType.ENROLLMENT,
                    ]
                ),
                min_size=1,
                max_size=4,
            )
        )
    steps = [enrollment]
    held = enrollment.body["allocations"]
    for kind in kinds:
        step = draw(next_step(kind, entrants, steps[-1].locked, held))
        if tight_float and kind.buys_from_float:
            step = replace(step, deposit=draw(float_deposits(entrants, tight=True)))
        steps.append(step)
    deposit = draw(float_deposits(entrants, tight=tight_float))
    chunk_size = draw(st.integers(1, 4))
    return Lifecycle(entrants, chunk_size, deposit, steps, draw(st.booleans()), precision)


# -- invariants -------------------------------------------------------------------------


def assert_value_conserved(world: World) -> None:
    """Σ Trader positions + venue net == 0 per asset; Σ cash + float + venue == deposits."""
    traders = world.traders().values()
    venue: dict[str, Decimal] = defaultdict(lambda: ZERO)
    venue_fiat = ZERO
    for audit in world.audits:
        for asset, moves in audit.operation.totals.items():
            venue[asset] += Decimal(moves.get("sold", "0")) - Decimal(moves.get("bought", "0"))
            venue_fiat += Decimal(moves.get("paid", "0")) - Decimal(moves.get("received", "0"))
    for asset in set(venue) | {a for t in traders for a in t.positions}:
        held = sum((t.positions.get(asset, ZERO) for t in traders), ZERO)
        assert held + venue[asset] == 0, (asset, held, venue[asset])
    cash = sum((t.cash for t in traders), ZERO)
    assert cash + world.float_account().balance + venue_fiat == world.deposits


def assert_settlements_post_balanced_ledgers(world: World, audit: Audit) -> None:
    """The postings of the Traders' `Settled` events net to zero and match the Operation."""
    postings = []
    for code, event in world.settled_events(audit.operation.id).items():
        data = vars(event)
        postings += settlement_postings(
            ids.trader_id(world.strategy_id, code),
            QUOTED,
            data["instructions"],
            data["funded"],
            data["paid_out"],
        )
    assert imbalances(postings) == {}
    books = balances(postings)
    operation = audit.operation
    for asset, moves in operation.totals.items():
        net = Decimal(moves.get("sold", "0")) - Decimal(moves.get("bought", "0"))
        assert books.get((VENUE, asset), ZERO) == net, asset
    float_net = Decimal(operation.float_moves["credit"]) - Decimal(operation.float_moves["debit"])
    assert books.get((FLOAT, QUOTED), ZERO) == float_net
    assert world.float_account().balance - audit.float_balance_before == float_net


def assert_nothing_negative_and_no_hold_left(world: World) -> None:
    for code, trader in world.traders().items():
        assert check_non_negative(code, trader.positions, trader.cash) == []
        assert trader.held_by is None, code
    account = world.float_account()
    assert account.balance >= 0
    assert account.holds == {}


def assert_uniform_prices(world: World, audit: Audit) -> None:
    locked = operation_prices(audit.operation)
    if audit.operation.locked_prices:
        assert locked == {a: audit.step.locked[a] for a in audit.operation.flows}
    instructions = {
        code: vars(event)["instructions"]
        for code, event in world.settled_events(audit.operation.id).items()
    }
    assert check_uniform_prices(str(audit.operation.id), locked, instructions) == []


def assert_turned_away_traders_unchanged(world: World, audit: Audit) -> None:
    """Rejected or skipped at the check, or not in the Operation at all: no event, no hold."""
    for code, before in audit.before.items():
        if audit.decisions.get(code, {}).get("outcome") == "approved":
            continue
        after = world.state(code)
        assert after == before, (code, audit.decisions.get(code))
        assert after is None or after.held_by != audit.operation.id
        if code in audit.outcomes:
            assert audit.outcomes[code] == audit.decisions[code], code


def float_covered(audit: Audit) -> dict[str, bool]:
    """Per buyer approved at the check, whether the float covers it: first come, first served
    in request order, each approved if what is left covers its whole amount (§11.12)."""
    left = audit.float_at_reservation
    assert left is not None, "only an Operation that reached pricing reserved the float"
    covered = {}
    for order in audit.orders:
        if audit.decisions[order.code]["outcome"] != "approved":
            continue
        assert order.amount is not None
        covered[order.code] = order.amount <= left
        left -= order.amount if covered[order.code] else ZERO
    return covered


def expected_ending(
    world: World, audit: Audit, order: ParticipantOrder, holdings: Holdings
) -> tuple[str, str, tuple[Leg, ...]]:
    """(outcome, reasons, legs) an approved Trader must end with, derived from the rules at
    the locked prices: float in request order for buys, a partial sell covered at the locked
    price or refused whole, dust skipped."""
    operation = audit.operation
    if operation.failure:
        return "rejected", operation.failure, ()
    market = locked_market(world, audit)
    terms = terms_of(audit)
    if operation.type.buys_from_float and not float_covered(audit)[order.code]:
        return "rejected", "insufficient_funds", ()
    if operation.type is OperationType.PARTIAL_SELL:
        assert terms.allocations is not None and order.amount is not None
        plan = partial_sell_plan(order.amount, terms.allocations, holdings, market)
        if plan.skip:
            return "skipped", "dust", ()
        if plan.refusal is not None:
            return "rejected", plan.refusal.value, ()
        return "settled", "", plan.legs
    legs = planned_legs(terms, order, holdings, market)
    if not legs and not (operation.type is OperationType.LIQUIDATION and holdings.cash > 0):
        return "skipped", "dust", ()
    return "settled", "", legs


def assert_all_or_nothing(world: World, audit: Audit) -> None:
    """An approved Trader gets one hold and then either every leg of its allotment at the
    locked prices, or none and its holdings untouched, for the reason the rules give."""
    operation = audit.operation
    orders = {order.code: order for order in audit.orders}
    assert set(audit.decisions) == set(orders)
    for code, decision in audit.decisions.items():
        if decision["outcome"] != "approved":
            continue
        before = audit.before[code]
        events = world.new_events(code, before)
        kinds = [kind_of(e) for e in events]
        opened = ["Opened"] if before is None else []
        assert kinds in (
            [*opened, "HoldPlaced", "Settled"],
            [*opened, "HoldPlaced", "HoldReleased"],
        )
        assert all(vars(e)["operation_id"] == operation.id for e in events[len(opened) :])
        holdings = before.holdings if before else Holdings()
        after = world.state(code)
        assert after is not None
        final = audit.outcomes[code]
        outcome, reasons, legs = expected_ending(world, audit, orders[code], holdings)
        assert (final["outcome"], final["reasons"]) == (outcome, reasons), code
        if kinds[-1] == "HoldReleased":
            assert outcome != "settled", code
            assert after.holdings == holdings, code
            continue
        assert outcome == "settled", code
        settled = vars(events[-1])
        assert legs_of(events[-1]) == [leg.as_dict() for leg in legs], code
        if operation.type is OperationType.PARTIAL_SELL:
            assert settled["paid_out"] == orders[code].amount, code  # exactly what was asked
        assert after.holdings == holdings.after(
            tuple(Leg.from_dict(i) for i in settled["instructions"]),
            settled["funded"],
            settled["paid_out"],
        )


def assert_float_approves_in_request_order(audit: Audit) -> None:
    """Walking the requests in order: a buy ends refused for funds iff its amount did not fit
    what the float had left; the check itself never turns a buyer away for funds."""
    if not audit.operation.type.buys_from_float or audit.operation.failure:
        return
    if not audit.reached_pricing:  # nobody passed the check: no float was reserved
        return
    refused_first: str | None = None
    for code, covered in float_covered(audit).items():
        short = audit.outcomes[code]["reasons"] == "insufficient_funds"
        assert short is not covered, (code, audit.outcomes[code])
        if short:
            refused_first = refused_first or code
        elif refused_first:
            hypothesis.event("a smaller buy approved after a refusal")
    for decision in audit.decisions.values():
        assert "insufficient_funds" not in decision["reasons"].split(","), decision


def assert_replays_rebuild_saved_state(world: World) -> None:
    """Every aggregate rebuilt from its events (and from its snapshot, if it has one) is the
    very state its last command left."""
    app = world.app
    for aggregate_id, saved in app.saved.items():
        replayed = project_aggregate(None, app.events.get(aggregate_id))
        assert replayed is not None
        assert replayed.__dict__ == saved, aggregate_id
        assert app.repository.get(aggregate_id).__dict__ == saved, aggregate_id


def assert_rebalanced_within_bound(world: World, audit: Audit) -> None:
    if audit.operation.type is not OperationType.REBALANCE:
        return
    allocations = audit.operation.allocation_set
    assert allocations is not None
    market = locked_market(world, audit)
    for code, event in world.settled_events(audit.operation.id).items():
        before = audit.before[code]
        assert before is not None
        after = world.state(code)
        assert after is not None
        legs = [Leg.from_dict(i) for i in vars(event)["instructions"]]
        targets = rebalance_targets(allocations, before.holdings, market.prices)
        slack = rebalance_slack(allocations, before.holdings, legs, market)
        with localcontext(prec=80):
            for asset, target in targets.items():
                gap = after.positions.get(asset, ZERO) - target
                if asset not in allocations.assets:
                    assert after.positions.get(asset, ZERO) == 0, (code, asset)
                    continue
                assert -slack[asset].below < gap <= slack[asset].above, (code, asset, gap)


def assert_liquidated_hold_nothing(world: World, audit: Audit) -> None:
    if audit.operation.type is not OperationType.LIQUIDATION:
        return
    for code in world.settled_events(audit.operation.id):
        after = world.state(code)
        assert after is not None
        assert after.positions == {} and after.cash == 0, code
        assert after.status is TraderStatus.LIQUIDATED


def expected_status(audit: Audit) -> tuple[OperationStatus, OperationReason]:
    """The end state §3.1/§11.14 give for these Execution outcomes."""
    operation = audit.operation
    finals = Counter(d["outcome"] for d in audit.outcomes.values())
    total = sum(finals.values())
    if operation.failure:
        return OperationStatus.FAILED, OperationReason(operation.failure)
    if total == 0:
        return OperationStatus.FAILED, OperationReason.NO_EXECUTIONS
    if finals["settled"] == total:
        return OperationStatus.SETTLED, OperationReason.NONE
    if finals["rejected"] == total:
        return OperationStatus.FAILED, OperationReason.ALL_REJECTED
    if finals["skipped"] == total:
        return OperationStatus.SKIPPED, OperationReason.ALL_SKIPPED
    return OperationStatus.SETTLED, OperationReason.PARTIAL_SUCCESS  # mixed, settled or not


def run_all(lifecycle: Lifecycle) -> World:
    world = lifecycle.world()
    for step in lifecycle.steps:
        world.run(step)
    return world


# -- properties of every Operation ------------------------------------------------------


@WHOLE_RUNS
@given(lifecycles())
def test_value_is_conserved_across_traders_float_and_venue(lifecycle: Lifecycle) -> None:
    world = lifecycle.world()
    for step in lifecycle.steps:
        audit = world.run(step)
        assert_value_conserved(world)
        assert_settlements_post_balanced_ledgers(world, audit)


@WHOLE_RUNS
@given(lifecycles())
def test_no_position_cash_or_float_ever_goes_negative_and_no_hold_outlives_its_operation(
    lifecycle: Lifecycle,
) -> None:
    world = lifecycle.world()
    for step in lifecycle.steps:
        world.run(step)
        assert_nothing_negative_and_no_hold_left(world)


@WHOLE_RUNS
@given(lifecycles())
def test_every_instruction_of_an_operation_carries_the_locked_price_of_its_asset(
    lifecycle: Lifecycle,
) -> None:
    world = run_all(lifecycle)
    for audit in world.audits:
        assert_uniform_prices(world, audit)


@WHOLE_RUNS
@given(lifecycles())
def test_traders_turned_away_by_the_check_get_no_event_and_no_hold(lifecycle: Lifecycle) -> None:
    world = lifecycle.world()
    for step in lifecycle.steps:
        assert_turned_away_traders_unchanged(world, world.run(step))


@WHOLE_RUNS
@given(lifecycles())
def test_every_execution_settles_all_its_planned_legs_or_none(lifecycle: Lifecycle) -> None:
    world = lifecycle.world()
    for step in lifecycle.steps:
        assert_all_or_nothing(world, world.run(step))


@WHOLE_RUNS
@given(lifecycles())
def test_replaying_each_aggregate_rebuilds_the_state_its_commands_left(
    lifecycle: Lifecycle,
) -> None:
    assert_replays_rebuild_saved_state(run_all(lifecycle))


@WHOLE_RUNS
@given(lifecycles())
def test_every_operation_ends_with_the_status_its_executions_call_for(
    lifecycle: Lifecycle,
) -> None:
    for audit in run_all(lifecycle).audits:
        operation = audit.operation
        finals = Counter(d["outcome"] for d in audit.outcomes.values())
        assert set(finals) <= {"settled", "skipped", "rejected"}
        assert sum(finals.values()) == operation.participant_count == len(audit.orders)
        for outcome in ("settled", "skipped", "rejected"):
            assert operation.counts[outcome] == finals[outcome], outcome
        assert operation.status.terminal
        assert (operation.status, operation.status_reason) == expected_status(audit)


ONE_DUST_ONE_INELIGIBLE = Lifecycle(
    entrants=[
        Entrant("DUST01", Decimal("1.00"), False),
        Entrant("NOBODY", Decimal("100.00"), False, UNREGISTERED),
    ],
    chunk_size=1,
    float_deposit=Decimal("1000.00"),
    steps=[
        Step(
            OperationType.ENROLLMENT,
            {
                "allocations": [
                    {"underlying_currency": "BTC", "weight": "0.5"},
                    {"underlying_currency": "ETH", "weight": "0.5"},
                ],
                "participants": [
                    {"participant_code": "DUST01", "amount": "1.00"},
                    {"participant_code": "NOBODY", "amount": "100.00"},
                ],
            },
            dict.fromkeys(ASSETS, Decimal("100.00")),
            dict.fromkeys(ASSETS, Decimal("100.00")),
        )
    ],
)


@WHOLE_RUNS
@given(lifecycles())
@example(lifecycle=ONE_DUST_ONE_INELIGIBLE)
def test_an_operation_in_which_nobody_settled_ends_as_the_spec_says(
    lifecycle: Lifecycle,
) -> None:
    """With nothing settled: no Executions at all is `failed`/`no_executions` (§3.1), all
    rejected `failed`/`all_rejected`, all skipped `skipped`/`all_skipped`, and a mix of
    rejected and skipped is a mixed outcome, `settled`/`partial_success` (§11.14)."""
    for audit in run_all(lifecycle).audits:
        operation = audit.operation
        counts = operation.counts
        if counts["settled"] or operation.failure:
            continue
        rejected, skipped = counts["rejected"], counts["skipped"]
        expected = {
            (False, False): (OperationStatus.FAILED, OperationReason.NO_EXECUTIONS),
            (True, False): (OperationStatus.FAILED, OperationReason.ALL_REJECTED),
            (False, True): (OperationStatus.SKIPPED, OperationReason.ALL_SKIPPED),
            (True, True): (OperationStatus.SETTLED, OperationReason.PARTIAL_SUCCESS),
        }[(rejected > 0, skipped > 0)]
        assert (operation.status, operation.status_reason) == expected, counts


# -- properties of one kind of Operation ------------------------------------------------


@SHORT_RUNS
@given(lifecycles(then=[OperationType.TOP_UP, OperationType.TOP_UP], max_size=10, tight_float=True))
def test_the_float_approves_buys_in_request_order_until_it_runs_out(lifecycle: Lifecycle) -> None:
    world = lifecycle.world()
    for step in lifecycle.steps:
        audit = world.run(step)
        assert_float_approves_in_request_order(audit)


@SHORT_RUNS
@given(
    st.sampled_from(list(OperationType)).flatmap(
        lambda kind: lifecycles(then=[] if kind is OperationType.ENROLLMENT else [kind])
    ),
    st.sampled_from([OperationReason.PRICING_FAILED, OperationReason.EXECUTION_FAILED]),
)
def test_a_failed_operation_releases_every_hold_and_changes_no_balance(
    lifecycle: Lifecycle, reason: OperationReason
) -> None:
    *setup, last = lifecycle.steps
    world = lifecycle.world()
    for step in setup:
        world.run(step)
    failing = replace(last, failure=reason)
    audit = world.run(failing)
    if audit.reached_pricing and not audit.operation.failure:
        # Buys and sells netted to no block at all: there was nothing for the venue to refuse.
        assert reason is OperationReason.EXECUTION_FAILED and not audit.operation.block_orders
        return
    for code, before in audit.before.items():
        after = world.state(code)
        kinds = [kind_of(e) for e in world.new_events(code, before)]
        if before is None:
            assert after is None or after.status is TraderStatus.PENDING, code
            assert kinds in ([], ["Opened", "HoldPlaced", "HoldReleased"]), code
            continue
        assert after is not None
        assert kinds in ([], ["HoldPlaced", "HoldReleased"]), code
        assert (after.status, after.positions, after.cash) == (
            before.status,
            before.positions,
            before.cash,
        )
        assert after.held_by is None
    account = world.float_account()
    assert account.holds == {}
    assert account.balance == audit.float_balance_before
    assert audit.operation.totals == {}
    if audit.reached_pricing:
        assert audit.operation.status is OperationStatus.FAILED
        assert audit.operation.status_reason is reason
        approved = [c for c, d in audit.decisions.items() if d["outcome"] == "approved"]
        assert all(
            audit.outcomes[c]
            == {**audit.decisions[c], "outcome": "rejected", "reasons": reason.value}
            for c in approved
        )


@SHORT_RUNS
@given(lifecycles(then=[OperationType.REBALANCE, OperationType.TOP_UP, OperationType.REBALANCE]))
def test_rebalanced_traders_end_within_the_rounding_bound_of_their_targets(
    lifecycle: Lifecycle,
) -> None:
    world = lifecycle.world()
    for step in lifecycle.steps:
        assert_rebalanced_within_bound(world, world.run(step))


@SHORT_RUNS
@given(lifecycles(then=[OperationType.REBALANCE, OperationType.LIQUIDATION]))
def test_liquidated_traders_hold_nothing_and_no_cash(lifecycle: Lifecycle) -> None:
    world = lifecycle.world()
    for step in lifecycle.steps:
        assert_liquidated_hold_nothing(world, world.run(step))


@SHORT_RUNS
@given(
    lifecycles(then=[OperationType.TOP_UP, OperationType.REBALANCE]),
    st.sampled_from([OperationType.TOP_UP, OperationType.REBALANCE, OperationType.LIQUIDATION]),
    st.booleans(),
)
def test_a_trader_held_by_one_operation_is_turned_away_by_another_unchanged(
    lifecycle: Lifecycle, second_kind: OperationType, second_finishes_first: bool
) -> None:
    enrollment, first, second = lifecycle.steps
    everyone = [e.code for e in lifecycle.entrants]
    if second_kind is OperationType.TOP_UP:
        second = replace(second, kind=second_kind, body=first.body)
    elif second_kind is OperationType.LIQUIDATION:
        second = replace(second, kind=second_kind, body={"all": True})
    else:
        body = {"allocations": second.body["allocations"], "participants": everyone}
        second = replace(second, body=body)
    world = lifecycle.world()
    world.run(enrollment)
    first_audit = world.begin(first)
    second_audit = world.begin(second)
    first_id = first_audit.operation.id
    held = {c for c, s in second_audit.before.items() if s and s.held_by == first_id}
    for code in held & set(second_audit.decisions):
        assert "concurrent_hold" in second_audit.decisions[code]["reasons"].split(","), code
        assert second_audit.decisions[code]["outcome"] == "rejected"
    assert_turned_away_traders_unchanged(world, second_audit)
    audits = (first_audit, second_audit)
    for audit in reversed(audits) if second_finishes_first else audits:
        world.finish(audit)
    for audit in (first_audit, second_audit):
        assert_all_or_nothing(world, audit)
        assert_uniform_prices(world, audit)
    assert_value_conserved(world)
    assert_nothing_negative_and_no_hold_left(world)
    assert_replays_rebuild_saved_state(world)


@settings(max_examples=5, deadline=None)
@given(lifecycles(then=[OperationType.TOP_UP] * 12, min_size=1, max_size=2))
def test_a_trader_rebuilt_from_its_snapshot_equals_the_trader_its_commands_left(
    lifecycle: Lifecycle,
) -> None:
    """Traders are snapshotted every 25 events; thirteen Operations take one past that."""
    lifecycle = replace(
        lifecycle,
        entrants=[replace(e, eligibility=ELIGIBLE) for e in lifecycle.entrants],
        float_deposit=Decimal("10000000.00"),
        steps=[replace(step, failure=None) for step in lifecycle.steps],
    )
    world = run_all(lifecycle)
    assert_replays_rebuild_saved_state(world)
    snapshots = world.app.snapshots
    assert snapshots is not None
    versions = {code: t.version for code, t in world.traders().items()}
    snapshotted = [
        code for code in versions if list(snapshots.get(ids.trader_id(world.strategy_id, code)))
    ]
    assert snapshotted or max(versions.values(), default=0) < 25


@settings(max_examples=5, deadline=None)
@given(
    participant_batches(26, 30, ineligible=False, amount_low="2.00", amount_high="50.00"),
    allocation_bodies(max_assets=2),
    price_sets(),
)
@example(
    entrants=[Entrant(f"P{i:02d}", Decimal("10.00"), True) for i in range(26)],
    allocations=[{"underlying_currency": "BTC", "weight": "1"}],
    prices=dict.fromkeys(ASSETS, Decimal("100.00")),
)
def test_an_operation_of_many_chunks_settles_every_chunk_and_conserves_value(
    entrants: list[Entrant],
    allocations: list[dict[str, str]],
    prices: dict[str, Decimal],
) -> None:
    """One chunk per Trader takes the Operation's own stream past 50 events, where snapshots
    start: an Operation rebuilt from its snapshot must carry on exactly as before."""
    world = World(entrants, chunk_size=1)
    world.deposit(sum((e.amount for e in entrants), ZERO))
    body = {"allocations": allocations, "participants": [e.funded() for e in entrants]}
    audit = world.run(Step(OperationType.ENROLLMENT, body, prices, prices))
    operation = audit.operation
    assert operation.version > 50
    assert operation.status.terminal, (operation.status, operation.counts)
    assert operation.all_chunks_are("settled"), operation.chunks
    assert_all_or_nothing(world, audit)
    assert_value_conserved(world)
    assert_nothing_negative_and_no_hold_left(world)
    assert_replays_rebuild_saved_state(world)


def settled_beyond_fills(operation: Operation) -> dict[str, Decimal]:
    """Per asset, the Traders' net settled quantity minus the venue's block fill."""
    gaps = {}
    for asset in sorted(set(operation.totals) | set(operation.fills)):
        flow = operation.totals.get(asset, {})
        settled = Decimal(flow.get("bought", "0")) - Decimal(flow.get("sold", "0"))
        fill = operation.fills.get(asset)
        filled = Decimal(fill["quantity"]) if fill else ZERO
        if fill and fill["side"] == Side.SELL.value:
            filled = -filled
        if settled != filled:
            gaps[asset] = settled - filled
    return gaps


@WHOLE_RUNS
@given(lifecycles())
def test_the_house_residual_recorded_at_settlement_is_what_traders_settled_beyond_the_fills(
    lifecycle: Lifecycle,
) -> None:
    """Blocks are sized from aggregates at the locked price, Traders round one by one: the
    venue (the house) carries the difference, so the Operation must record all of it."""
    for audit in run_all(lifecycle).audits:
        operation = audit.operation
        if operation.all_chunks_are("settled"):
            recorded = {a: Decimal(q) for a, q in operation.residual.items()}
            assert recorded == settled_beyond_fills(operation)


@SHORT_RUNS
@given(
    participant_batches(1, 6, ineligible=False),
    allocation_bodies(),
    price_sets(),
    st.integers(1, 3),
)
def test_a_steady_price_enrollment_leaves_the_house_nothing(
    entrants: list[Entrant],
    allocations: list[dict[str, str]],
    prices: dict[str, Decimal],
    chunk_size: int,
) -> None:
    """Each block is the exact net of the Traders' own rounded quantities, so nothing is left
    for the house between the fill and what the Traders settle."""
    world = World(entrants, chunk_size)
    world.deposit(sum((e.amount for e in entrants), ZERO))
    body = {"allocations": allocations, "participants": [e.funded() for e in entrants]}
    operation = world.run(Step(OperationType.ENROLLMENT, body, prices, prices)).operation
    assert settled_beyond_fills(operation) == {}
    assert operation.residual == {}


def dust_starved_rebalance() -> Lifecycle:
    """One Trader holding 1 each of BTC, ETH, SOL and ADA at 100 moves to weights that make
    BTC a real sell (4.96) but ETH, SOL and ADA dust sells (0.96 each), and AVAX at 1 a buy
    of 7.84 that only the BTC proceeds fund."""
    prices = {**dict.fromkeys(ASSETS, Decimal("100.00")), "AVAX": Decimal("1.00")}
    quarter = [{"underlying_currency": a, "weight": "0.25"} for a in ("BTC", "ETH", "SOL", "ADA")]
    weights = {"BTC": "0.2376", "ETH": "0.2476", "SOL": "0.2476", "ADA": "0.2476", "AVAX": "0.0196"}
    return Lifecycle(
        entrants=[Entrant("ABC123", Decimal("400.00"), True)],
        chunk_size=1,
        float_deposit=Decimal("400.00"),
        steps=[
            Step(
                OperationType.ENROLLMENT,
                {
                    "allocations": quarter,
                    "participants": [{"participant_code": "ABC123", "amount": "400.00"}],
                },
                prices,
                prices,
            ),
            Step(
                OperationType.REBALANCE,
                {
                    "allocations": [
                        {"underlying_currency": a, "weight": w} for a, w in weights.items()
                    ]
                },
                prices,
                prices,
            ),
        ],
    )


@SHORT_RUNS
@given(lifecycles())
@example(lifecycle=dust_starved_rebalance())
def test_a_settled_operation_of_any_kind_leaves_the_house_nothing(lifecycle: Lifecycle) -> None:
    """Enrollments, top-ups, partial sells, rebalances and liquidations alike, with prices
    moving up to 10% between check and lock: the blocks are the Traders' exact net at the
    locked prices, so the fills and the settlements agree to the last unit (the dust-starved
    rebalance used to leave the house 2.88 AVAX)."""
    for audit in run_all(lifecycle).audits:
        operation = audit.operation
        if operation.all_chunks_are("settled"):
            assert settled_beyond_fills(operation) == {}, operation.type
            assert operation.residual == {}


@SHORT_RUNS
@given(lifecycles())
@example(
    lifecycle=Lifecycle(
        entrants=[Entrant("ABC123", Decimal("1000.00"), True)],
        chunk_size=1,
        float_deposit=Decimal("1000.00"),
        steps=[
            Step(
                OperationType.ENROLLMENT,
                {
                    "allocations": [
                        {"underlying_currency": "BTC", "weight": "0.5"},
                        {"underlying_currency": "ETH", "weight": "0.5"},
                    ],
                    "participants": [{"participant_code": "ABC123", "amount": "1000.00"}],
                },
                dict.fromkeys(ASSETS, Decimal("60000.00")),
                dict.fromkeys(ASSETS, Decimal("60000.00")),
                OperationReason.EXECUTION_FAILED,
            )
        ],
    )
)
def test_an_operation_failed_after_its_fills_leaves_no_fill_unaccounted_for(
    lifecycle: Lifecycle,
) -> None:
    """When the venue fills one block and refuses the next, the Operation fails and every
    Trader is released: the blocks already filled are then wholly the house's, and the
    Operation must record them as it records the residual of a settlement."""
    for audit in run_all(lifecycle).audits:
        operation = audit.operation
        if operation.fills and operation.status is OperationStatus.FAILED:
            recorded = {a: Decimal(q) for a, q in operation.residual.items()}
            assert recorded == settled_beyond_fills(operation), operation.fills
