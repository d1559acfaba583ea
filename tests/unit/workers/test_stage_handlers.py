"""The stage handlers on the in-memory domain and the simulated venue: no services needed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from domain.services import Trading
from domain.statuses import OperationReason, OperationStatus, OperationType
from infra.bus import Delivery
from infra.venue.config import VenueConfig, build_venue
from infra.venue.simulated import SimulatedVenue
from tests.unit.domain.flows import BLUE_CHIP, PLATFORM, funded, new_app, new_strategy
from workers.context import StageContext
from workers.credit_check import check_credit
from workers.execution import execute
from workers.messages import CreditCheckRequested, ExecutionRequested, PricingRequested
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


async def run_stages(app: Trading, ctx: StageContext, operation_id: UUID) -> None:
    for chunk in range(app.operation(operation_id).chunk_count):
        await check_credit(
            delivery(CreditCheckRequested(operation_id=operation_id, chunk=chunk)), ctx
        )
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
