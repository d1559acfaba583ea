"""The stage handlers on the in-memory domain and the simulated venue: no services needed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from domain import ids
from domain.pricing import LockedQuote
from domain.services import Trading
from domain.statuses import OperationReason, OperationStatus, OperationType
from domain.trader import Trader
from domain.venue import Quote
from infra.bus import Delivery
from infra.bus.messages import CreditCheckRequested, ExecutionRequested, PricingRequested
from infra.venue import build_venue
from infra.venue.config import VenueConfig
from infra.venue.simulated import SimulatedVenue
from tests.unit.domain.flows import BLUE_CHIP, PLATFORM, funded, new_app, new_strategy
from workers.context import StageContext
from workers.credit_check import check_credit
from workers.execution import execute
from workers.pricing_lock import lock_prices


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def delivery(message: Any) -> Delivery:
    return Delivery("t", message.encode(), None, {}, 0, 0)


def setup(venue: SimulatedVenue, clock: Clock) -> tuple[Trading, StageContext, UUID]:
    app = new_app(chunk_size=2)
    codes = ["A", "B", "C"]
    app.register_participants(PLATFORM, codes)
    strategy = new_strategy(app)
    operation, _ = app.request_operation(
        PLATFORM,
        strategy.id,
        uuid4(),
        OperationType.ENROLLMENT,
        {"allocations": BLUE_CHIP, "participants": funded(codes)},
    )
    return app, StageContext(app, venue, venue, call, clock), operation.id


async def check_chunks(app: Trading, ctx: StageContext, operation_id: UUID) -> None:
    for chunk in range(app.operation(operation_id).chunk_count):
        await check_credit(
            delivery(CreditCheckRequested(operation_id=operation_id, chunk=chunk)), ctx
        )


async def run_stages(app: Trading, ctx: StageContext, operation_id: UUID) -> None:
    await check_chunks(app, ctx, operation_id)
    await lock_prices(delivery(PricingRequested(operation_id=operation_id)), ctx)
    await execute(
        delivery(ExecutionRequested(operation_id=operation_id, action="place_blocks")), ctx
    )


async def test_the_handlers_take_an_operation_from_check_to_settlement() -> None:
    clock = Clock()
    venue = build_venue(VenueConfig(seed=7), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await run_stages(app, ctx, operation_id)
    operation = app.operation(operation_id)
    assert operation.ready_to_settle
    for chunk in range(operation.chunk_count):
        settle = ExecutionRequested(operation_id=operation_id, action="settle", chunk=chunk)
        await execute(delivery(settle), ctx)
        await execute(delivery(settle), ctx)  # redelivered: a no-op
    operation = app.operation(operation_id)
    assert operation.status is OperationStatus.SETTLED
    mids = await venue.indicative("USD", ["BTC"])
    assert Decimal(operation.locked_prices["BTC"]["price"]) >= mids["BTC"]  # buyers pay the ask


async def test_a_quote_that_expires_before_the_lock_fails_pricing_cleanly() -> None:
    clock = Clock()

    class SlowToLock(SimulatedVenue):
        async def firm_quote(self, *args: Any, **kwargs: Any) -> Any:
            quote = await super().firm_quote(*args, **kwargs)
            clock.now += timedelta(seconds=11)  # past the 10 s time-to-live
            return quote

    venue = SlowToLock(VenueConfig(), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await run_stages(app, ctx, operation_id)
    operation = app.operation(operation_id)
    assert operation.failure == OperationReason.PRICING_FAILED.value
    assert "expired" in operation.failure_detail
    for chunk in range(operation.chunk_count):
        release = ExecutionRequested(operation_id=operation_id, action="release", chunk=chunk)
        await execute(delivery(release), ctx)
    operation = app.operation(operation_id)
    assert (operation.status, operation.status_reason) == (
        OperationStatus.FAILED,
        OperationReason.PRICING_FAILED,
    )


async def test_the_pricing_step_places_its_blocks_before_the_quotes_can_expire() -> None:
    """The blocks-lane task comes through the relay, which can lag a quote's life under load:
    the pricing step fills the blocks itself, and the late task finds nothing left to do."""
    clock = Clock()
    venue = build_venue(VenueConfig(seed=7), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await check_chunks(app, ctx, operation_id)
    await lock_prices(delivery(PricingRequested(operation_id=operation_id)), ctx)
    operation = app.operation(operation_id)
    assert operation.ready_to_settle and not operation.failure
    filled = dict(operation.fills)
    clock.now += timedelta(seconds=11)  # the quotes' 10 s are over when the task arrives
    late = ExecutionRequested(operation_id=operation_id, action="place_blocks")
    await execute(delivery(late), ctx)
    await lock_prices(delivery(PricingRequested(operation_id=operation_id)), ctx)
    operation = app.operation(operation_id)
    assert operation.ready_to_settle and not operation.failure
    assert operation.fills == filled


async def test_a_block_placed_by_both_paths_is_filled_once() -> None:
    """A crash between the lock and the fills leaves placement to the blocks lane; should
    both run, the venue returns its first fill to the repeated client order id."""
    clock = Clock()
    venue = build_venue(VenueConfig(seed=7), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await check_chunks(app, ctx, operation_id)
    operation, book = app.open_pricing(operation_id)
    assert book is not None
    quotes = {
        asset: LockedQuote.of(
            asset, await venue.firm_quote("USD", asset, order.side, order.quantity)
        )
        for asset, order in book.blocks(await venue.indicative("USD", book.assets)).items()
    }
    app.lock_prices(operation_id, quotes, {}, book)  # the step "crashed" here
    task = ExecutionRequested(operation_id=operation_id, action="place_blocks")
    await execute(delivery(task), ctx)
    fills = dict(app.operation(operation_id).fills)
    await lock_prices(delivery(PricingRequested(operation_id=operation_id)), ctx)  # redelivered
    await execute(delivery(task), ctx)
    operation = app.operation(operation_id)
    assert operation.ready_to_settle and operation.fills == fills


async def test_a_quote_that_expires_while_the_blocks_are_sized_is_asked_for_again() -> None:
    """Sizing a million Traders' blocks outlasts a quote: the same terms are quoted again and,
    at an unchanged price, locked without sizing again."""
    clock = Clock()
    sized: list[Quote] = []

    class SlowOnce(SimulatedVenue):
        async def firm_quote(self, *args: Any, **kwargs: Any) -> Quote:
            quote = await super().firm_quote(*args, **kwargs)
            if not sized:
                sized.append(quote)
                clock.now += timedelta(seconds=11)  # the first quote dies while sizing
            return quote

    venue = SlowOnce(VenueConfig(seed=7), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await run_stages(app, ctx, operation_id)
    operation = app.operation(operation_id)
    assert not operation.failure and operation.ready_to_settle
    locked = LockedQuote.from_dict(sized[0].asset, operation.locked_prices[sized[0].asset])
    assert locked.quote_id != sized[0].quote_id
    assert locked.expiry > clock.now


async def test_a_refused_block_order_fails_execution_before_anyone_settles() -> None:
    clock = Clock()
    venue = build_venue(VenueConfig(reject_orders=frozenset({"SOL"})), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await run_stages(app, ctx, operation_id)
    operation = app.operation(operation_id)
    assert operation.failure == OperationReason.EXECUTION_FAILED.value
    assert not operation.ready_to_settle
    assert set(operation.fills) == {"BTC", "ETH"}  # the blocks filled before SOL stand


async def test_pricing_a_second_time_changes_nothing() -> None:
    clock = Clock()
    venue = build_venue(VenueConfig(), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await run_stages(app, ctx, operation_id)
    version = app.operation(operation_id).version
    await lock_prices(delivery(PricingRequested(operation_id=operation_id)), ctx)
    await execute(
        delivery(ExecutionRequested(operation_id=operation_id, action="place_blocks")), ctx
    )
    assert app.operation(operation_id).version == version


class CountingVenue(SimulatedVenue):
    """The simulated venue, remembering every firm quote asked of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[tuple[str, str, Decimal]] = []

    async def firm_quote(self, currency: str, asset: str, side: Any, quantity: Decimal) -> Any:
        self.asked.append((asset, side.value, quantity))
        return await super().firm_quote(currency, asset, side, quantity)


async def settle_every_chunk(app: Trading, ctx: StageContext, operation_id: UUID) -> None:
    operation = app.operation(operation_id)
    for chunk in range(operation.chunk_count):
        action = "release" if operation.failure else "settle"
        await execute(
            delivery(ExecutionRequested(operation_id=operation_id, action=action, chunk=chunk)), ctx
        )


async def run_operation(
    app: Trading, ctx: StageContext, strategy_id: UUID, kind: OperationType, body: dict[str, Any]
) -> UUID:
    operation, _ = app.request_operation(PLATFORM, strategy_id, uuid4(), kind, body)
    await run_stages(app, ctx, operation.id)
    await settle_every_chunk(app, ctx, operation.id)
    return operation.id


def counting_world(
    spread: str, chunk_size: int
) -> tuple[Trading, StageContext, CountingVenue, UUID]:
    """A platform with participants A and B, a Strategy, and a venue that counts its quotes."""
    clock = Clock()
    venue = CountingVenue(VenueConfig(spread=Decimal(spread)), now=clock)
    app = new_app(chunk_size=chunk_size)
    app.register_participants(PLATFORM, ["A", "B"])
    strategy = new_strategy(app)
    return app, StageContext(app, venue, venue, call, clock), venue, strategy.id


async def test_a_block_that_outgrows_its_quote_is_quoted_again_larger() -> None:
    """With a 20% spread the bid is 10% under the mid: a partial sell needs 11% more units
    than at the indicative price, beyond the quote's headroom, so that quote is asked again."""
    app, ctx, venue, strategy_id = counting_world("0.2", chunk_size=2)
    btc = [{"underlying_currency": "BTC", "weight": "1"}]
    body = {"allocations": btc, "participants": funded(["A", "B"], "1000.00")}
    assert (
        app.operation(
            await run_operation(app, ctx, strategy_id, OperationType.ENROLLMENT, body)
        ).status
        is OperationStatus.SETTLED
    )
    venue.asked.clear()
    sell = {"allocations": btc, "participants": funded(["A", "B"], "300.00")}
    sold = app.operation(
        await run_operation(app, ctx, strategy_id, OperationType.PARTIAL_SELL, sell)
    )
    assert sold.status is OperationStatus.SETTLED, sold.failure_detail
    (first, second) = venue.asked
    assert first[:2] == second[:2] == ("BTC", "sell") and second[2] > first[2]
    order, quote = sold.block_orders["BTC"], sold.locked_prices["BTC"]
    assert Decimal(order["quantity"]) <= Decimal(quote["quantity"])
    assert sold.residual == {} and sold.float_moves["credit"] == "600.00"


async def test_buys_and_sells_that_cross_inside_the_spread_trade_at_the_mid_with_no_block() -> None:
    """A is heavy in BTC and B light, by about as much: rebalanced to 50/50 they net to a
    little BTC bought at the mid, a sell at the ask and a buy at the bid. No side's quote
    fits, so BTC (and ETH, its mirror) is crossed: priced at the mid, no venue order, and the
    house carries the Traders' small net, recorded with the nets seen at the bid and ask."""
    app, ctx, venue, strategy_id = counting_world("0.02", chunk_size=1)
    for code, btc_weight, amount in (("A", "0.7", "1000.00"), ("B", "0.3", "1001.00")):
        weights = [
            {"underlying_currency": "BTC", "weight": btc_weight},
            {"underlying_currency": "ETH", "weight": str(1 - Decimal(btc_weight))},
        ]
        body = {"allocations": weights, "participants": funded([code], amount)}
        await run_operation(app, ctx, strategy_id, OperationType.ENROLLMENT, body)
    half = [
        {"underlying_currency": "BTC", "weight": "0.5"},
        {"underlying_currency": "ETH", "weight": "0.5"},
    ]
    rebalance = app.operation(
        await run_operation(app, ctx, strategy_id, OperationType.REBALANCE, {"allocations": half})
    )
    assert rebalance.status is OperationStatus.SETTLED, rebalance.failure_detail
    assert set(rebalance.crossed) == {"BTC", "ETH"}
    assert rebalance.block_orders == {}
    mids = await venue.indicative("USD", ["BTC", "ETH"])
    for asset in ("BTC", "ETH"):
        crossed = rebalance.crossed[asset]
        assert Decimal(crossed["net_at_ask"]) < 0 < Decimal(crossed["net_at_bid"])
        assert Decimal(rebalance.locked_prices[asset]["price"]) == mids[asset]
        net = Decimal(crossed["net"])
        assert rebalance.residual.get(asset, "0") == str(net) or net == 0
        assert Decimal(crossed["net_at_ask"]) <= net <= Decimal(crossed["net_at_bid"])


async def test_every_chunk_is_checked_at_the_one_set_of_indicative_prices() -> None:
    """The market moves between two chunks' checks: the second is judged at the prices the
    first recorded, not at its own."""
    clock = Clock()
    venue = build_venue(VenueConfig(seed=3, step_bps=500), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await check_credit(delivery(CreditCheckRequested(operation_id=operation_id, chunk=0)), ctx)
    recorded = app.operation(operation_id).prices_for_check
    venue.tick(5)
    moved = await venue.indicative("USD", ["BTC"])
    assert moved["BTC"] != recorded["BTC"]
    await check_credit(delivery(CreditCheckRequested(operation_id=operation_id, chunk=1)), ctx)
    assert app.operation(operation_id).prices_for_check == recorded
    held = app.find(ids.trader_id(app.operation(operation_id).strategy_id, "C"), Trader)
    assert held is not None
    (event,) = [e for e in app.events.get(held.id) if type(e).__name__ == "HoldPlaced"]
    btc = next(leg for leg in vars(event)["instructions"] if leg["underlying_currency"] == "BTC")
    assert Decimal(btc["quantity"]) == (Decimal("500.00") / recorded["BTC"]).quantize(
        Decimal("0.00000001"), "ROUND_DOWN"
    )
