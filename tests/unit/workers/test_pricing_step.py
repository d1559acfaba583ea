"""One pricing step loads its Operation once and sizes the blocks once per set of prices:
the indicative ones, then the quoted ones the lock uses too (no timing, only counts)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from domain import allotment, stages
from domain.operation import Operation
from domain.services import Trading
from domain.statuses import OperationStatus, OperationType
from infra.bus.messages import PricingRequested
from infra.venue import build_venue
from infra.venue.config import VenueConfig
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    PRICES,
    check_all,
    funded,
    new_app,
    new_strategy,
    request,
    run,
)
from tests.unit.workers.test_stage_handlers import Clock, call, check_chunks, delivery, setup
from workers.context import StageContext
from workers.pricing_lock import lock_prices


async def test_pricing_loads_the_operation_once_and_sizes_each_price_set_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    venue = build_venue(VenueConfig(seed=7), now=clock)
    app, ctx, operation_id = setup(venue, clock)
    await check_chunks(app, ctx, operation_id)

    loads: list[UUID] = []
    get = app.repository.get

    def counted_get(aggregate_id: UUID, *args: Any, **kwargs: Any) -> Any:
        loads.append(aggregate_id)
        return get(aggregate_id, *args, **kwargs)

    sized: list[object] = []
    block_orders = allotment.block_orders

    def counted_blocks(net: Any) -> Any:
        sized.append(net)
        return block_orders(net)

    monkeypatch.setattr(app.repository, "get", counted_get)
    monkeypatch.setattr(allotment, "block_orders", counted_blocks)
    await lock_prices(delivery(PricingRequested(operation_id=operation_id)), ctx)
    operation_loads, sizings = loads.count(operation_id), len(sized)

    assert app.operation(operation_id).status is OperationStatus.SETTLING
    # Once to price and lock; then once per block fill the step records right after.
    assert operation_loads == 1 + len(app.operation(operation_id).fills)
    assert sizings == 2  # at the indicative prices, then at the quoted (locked) ones


SHIFTED = [
    {"underlying_currency": "BTC", "weight": "0.40"},
    {"underlying_currency": "ETH", "weight": "0.40"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]


def checked(
    kind: OperationType, chunk_size: int, prices: Mapping[str, Decimal] = PRICES
) -> tuple[Trading, Operation]:
    """Five enrolled Traders and an Operation of `kind` on them, every chunk checked at
    `prices`."""
    app = new_app(chunk_size=chunk_size)
    codes = [f"P{i}" for i in range(5)]
    app.register_participants(PLATFORM, codes)
    strategy = new_strategy(app)
    run(
        app,
        strategy,
        OperationType.ENROLLMENT,
        {"allocations": BLUE_CHIP, "participants": funded(codes)},
    )
    body: dict[str, Any] = {"allocations": SHIFTED}
    if kind.buys_from_float:
        body["participants"] = funded(codes, "33.33")
    elif kind is OperationType.PARTIAL_SELL:
        body["participants"] = funded(codes, "25.00")
    elif kind is OperationType.LIQUIDATION:
        body = {"participants": codes}
    operation = request(app, strategy, kind, body)
    check_all(app, operation.id, prices)
    return app, operation


def test_the_pricing_book_loads_the_chunks_a_few_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A million-Trader Operation's chunks, decoded at once beside the book, took 3.9 GB."""
    app, operation = checked(OperationType.REBALANCE, chunk_size=1)
    whole = app.pricing_book(operation.id)

    batches: list[int] = []
    get_many = app.get_many

    def counted(aggregate_ids: Any) -> Any:
        batches.append(len(aggregate_ids))
        return get_many(aggregate_ids)

    monkeypatch.setattr(stages, "CHUNKS_PER_LOAD", 2)
    monkeypatch.setattr(app, "get_many", counted)
    book = app.pricing_book(operation.id)
    assert batches[:3] == [2, 2, 1]
    assert book.chunks == whole.chunks


@pytest.mark.parametrize("kind", [OperationType.REBALANCE, OperationType.TOP_UP])
def test_a_large_book_packs_its_chunks_and_sizes_the_same_blocks(
    monkeypatch: pytest.MonkeyPatch, kind: OperationType
) -> None:
    """A million decoded entries weighed 975 MB in the pricing step: packed, they are a
    tenth of that, and the blocks and float reservation come out the same to the unit."""
    app, operation = checked(kind, chunk_size=2)
    decoded = app.pricing_book(operation.id)
    monkeypatch.setattr(stages, "PACK_ABOVE", 0)
    packed = app.pricing_book(operation.id)

    assert all(isinstance(entries, bytes) for entries, _ in packed.chunks)
    assert [allotment.entries_of(e) for e, _ in packed.chunks] == [e for e, _ in decoded.chunks]
    assert [budget for _, budget in packed.chunks] == [budget for _, budget in decoded.chunks]
    assert packed.blocks(PRICES) == decoded.blocks(PRICES)


@pytest.mark.parametrize("chunk_size", [1, 2, 5])
@pytest.mark.parametrize(
    "kind", [OperationType.REBALANCE, OperationType.PARTIAL_SELL, OperationType.LIQUIDATION]
)
def test_the_nets_the_check_recorded_are_the_blocks_at_the_indicative_prices(
    kind: OperationType, chunk_size: int
) -> None:
    """What lets pricing size its first quotes without a pass over every Trader: summed over
    the chunks, the check's nets are exactly the blocks such a pass finds at those prices."""
    app, operation = checked(kind, chunk_size)
    book = app.pricing_book(operation.id)
    at_check = app.operation(operation.id).prices_for_check

    assert book.checked_blocks() == book.blocks(at_check)
    assert book.checked_blocks()  # not trivially equal: the Traders trade


@pytest.mark.parametrize("kind", [OperationType.ENROLLMENT, OperationType.TOP_UP])
def test_buys_from_the_float_size_their_first_quotes_by_a_pass(kind: OperationType) -> None:
    """The check cannot know whom the float will cover: its nets are no block for a buy."""
    app, operation = checked(kind, chunk_size=2)
    assert app.pricing_book(operation.id).checked_blocks() is None


def test_an_operation_checked_before_nets_were_recorded_sizes_by_a_pass() -> None:
    app, operation = checked(OperationType.REBALANCE, chunk_size=2)
    stored = app.operation(operation.id)
    for flow in stored.flows.values():
        del flow["net"]
    assert stored.checked_net is None


async def test_a_rebalance_is_priced_with_one_pass_over_its_traders(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    venue = build_venue(VenueConfig(seed=7), now=clock)
    mids = await venue.indicative("USD", sorted(PRICES))
    app, operation = checked(OperationType.REBALANCE, chunk_size=2, prices=mids)
    ctx = StageContext(app, venue, venue, call, clock)
    passes: list[object] = []
    net_quantities = allotment.net_quantities

    def counted(allotments: Any) -> Any:
        passes.append(allotments)
        return net_quantities(allotments)

    monkeypatch.setattr(allotment, "net_quantities", counted)
    await lock_prices(delivery(PricingRequested(operation_id=operation.id)), ctx)

    assert app.operation(operation.id).status is OperationStatus.SETTLING
    assert len(passes) == 1  # at the quoted prices only: the first quotes came from the check
