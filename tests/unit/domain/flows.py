"""Helpers that drive a whole Operation through the domain's stages, as the workers will."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from domain.operation import Operation
from domain.pricing import BlockFill, LockedQuote
from domain.services import Trading
from domain.statuses import OperationReason, OperationStatus, OperationType, Side
from domain.strategy import Strategy

PLATFORM = "platform-a"
PRICES = {"BTC": Decimal("60000.00"), "ETH": Decimal("3000.00"), "SOL": Decimal("150.00")}
BLUE_CHIP = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]


def new_app(
    chunk_size: int = 3, float_usd: str = "1000000.00", kind: type[Trading] = Trading
) -> Trading:
    app = kind(chunk_size=chunk_size)
    app.ensure_default_catalogue()
    if Decimal(float_usd):
        app.deposit_float(PLATFORM, "USD", Decimal(float_usd), "PLATFORM-A-FLOAT")
    return app


def new_operation(chunks: int = 2) -> Operation:
    """A bare top-up of four participants in `chunks` chunks, for the Operation's own rules."""
    return Operation(
        platform_id="p",
        strategy_id=uuid4(),
        request_id=uuid4(),
        type="top_up",
        quoted_currency="USD",
        allocations=[{"underlying_currency": "BTC", "weight": "1"}],
        parameters={},
        request_hash="h",
        participant_count=4,
        chunk_count=chunks,
    )


def new_strategy(app: Trading, currency: str = "USD") -> Strategy:
    strategy, _ = app.create_strategy(PLATFORM, uuid4(), {"quoted_currency": currency})
    return strategy


def set_buffer(app: Trading, strategy_id: UUID, buffer: Decimal) -> Strategy:
    """Give the Strategy a policy with this cash buffer (its next policy version)."""
    strategy, _ = app.set_policy(PLATFORM, uuid4(), strategy_id, {"cash_buffer": str(buffer)})
    return strategy


def with_buffer(app: Trading, buffer: Decimal) -> Strategy:
    """A new Strategy whose policy has this cash buffer."""
    return set_buffer(app, new_strategy(app).id, buffer)


def funded(
    codes: Sequence[str], amount: str = "1000.00", auto: bool = True
) -> list[dict[str, Any]]:
    return [{"participant_code": c, "amount": amount, "auto_rebalance": auto} for c in codes]


def request(
    app: Trading,
    strategy: Strategy,
    kind: OperationType,
    body: Mapping[str, Any],
) -> Operation:
    operation, created = app.request_operation(PLATFORM, strategy.id, uuid4(), kind, body)
    assert created
    return operation


def check_all(
    app: Trading, operation_id: UUID, prices: Mapping[str, Decimal] = PRICES
) -> Operation:
    app.record_indicative_prices(operation_id, prices)
    operation = app.operation(operation_id)
    for index in range(operation.chunk_count):
        app.check_chunk(operation_id, index)
    return app.operation(operation_id)


def fitting_quotes(
    app: Trading, operation_id: UUID, locked: Mapping[str, Decimal] = PRICES
) -> dict[str, LockedQuote]:
    """Quotes at `locked` whose side and size fit the blocks at those prices, as the pricing
    stage's discovery ends with (reserving the float first, as it does)."""
    app.reserve_float(operation_id)
    assets = app.assets_to_price(operation_id)
    blocks = app.pricing_book(operation_id).blocks({a: locked[a] for a in assets})
    quotes = {}
    for asset in assets:
        order = blocks.get(asset)
        side = order.side.value if order else "buy"
        quantity = str(order.quantity) if order else "0"
        quotes[asset] = LockedQuote(
            asset, locked[asset], f"quote-{asset}", "2026-11-26T00:00:00Z", side, quantity
        )
    return quotes


def lock_and_fill(
    app: Trading, operation_id: UUID, locked: Mapping[str, Decimal] = PRICES
) -> Operation:
    app.lock_prices(operation_id, fitting_quotes(app, operation_id, locked))
    for asset, order in app.operation(operation_id).block_orders.items():
        fill = BlockFill(
            asset, Side(order["side"]), Decimal(order["quantity"]), locked[asset], f"fill-{asset}"
        )
        app.record_fill(operation_id, fill)
    return app.operation(operation_id)


def settle_all(app: Trading, operation_id: UUID) -> Operation:
    operation = app.operation(operation_id)
    for index in range(operation.chunk_count):
        app.settle_chunk(operation_id, index)
    return app.operation(operation_id)


def run(
    app: Trading,
    strategy: Strategy,
    kind: OperationType,
    body: Mapping[str, Any],
    indicative: Mapping[str, Decimal] = PRICES,
    locked: Mapping[str, Decimal] = PRICES,
) -> Operation:
    """Request an Operation and take it to its end, as the pipeline would."""
    operation = check_all(app, request(app, strategy, kind, body).id, indicative)
    if operation.status is OperationStatus.PRICING:
        lock_and_fill(app, operation.id, locked)
        operation = settle_all(app, operation.id)
    return operation


def fail_and_release(app: Trading, operation_id: UUID) -> Operation:
    app.fail_operation(operation_id, OperationReason.PRICING_FAILED, "quote expired")
    operation = app.operation(operation_id)
    for index in range(operation.chunk_count):
        app.release_chunk(operation_id, index)
    return app.operation(operation_id)
