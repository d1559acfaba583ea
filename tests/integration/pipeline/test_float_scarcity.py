"""A float too small for everyone, with chunks checked on parallel threads and a second
Operation competing: the float is approved in request order within each Operation, never goes
negative, pays out no more than was deposited, and every hold is released at the end.

Embedded mode on real PostgreSQL: the engine checks and settles chunks on its own thread pool,
so chunks of both Operations really are checked at the same time.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from domain.audit import describe, verify
from domain.chunk import OperationChunk, chunk_id
from domain.statuses import OperationStatus, OperationType
from infra.bootstrap.engine import Engine
from infra.bus.memory import InProcessBus
from infra.settings import Settings
from tests.integration.pipeline.harness import BLUE_CHIP, PLATFORM, wait_terminal

pytestmark = pytest.mark.integration

FIRST = [f"F{i:03d}" for i in range(30)]
SECOND = [f"S{i:03d}" for i in range(30)]


def _amount(code: str) -> Decimal:
    return Decimal(100 + 37 * (int(code[1:]) % 7))  # 100 .. 322: uneven, so order matters


def _body(codes: list[str]) -> dict[str, object]:
    return {
        "allocations": BLUE_CHIP,
        "participants": [{"participant_code": c, "amount": str(_amount(c))} for c in codes],
    }


def _outcomes(engine: Engine, operation_id: UUID, chunks: int) -> dict[str, dict[str, str]]:
    found = engine.trading.get_many([chunk_id(operation_id, i) for i in range(chunks)])
    return {
        code: decision
        for chunk in found.values()
        if isinstance(chunk, OperationChunk)
        for code, decision in chunk.decisions.items()
    }


async def test_a_short_float_is_shared_in_request_order_under_concurrency(
    fresh_database_url: str,
) -> None:
    demand = sum((_amount(c) for c in FIRST + SECOND), Decimal(0))
    # Under half of the whole: each Operation alone asks for about half, so whichever reserves
    # first is funded only in part, and the second gets what is left.
    deposit = (demand * Decimal("0.45")).quantize(Decimal("0.01"))
    settings = Settings(database_url=fresh_database_url, chunk_size=4)
    async with Engine(settings, fresh_database_url, ["all"], bus=InProcessBus()) as engine:
        trading = engine.trading
        await engine.call(trading.register_participants, PLATFORM, FIRST + SECOND)
        await engine.call(trading.deposit_float, PLATFORM, "USD", deposit, "IT")
        strategy, _ = await engine.call(
            trading.create_strategy, PLATFORM, uuid4(), {"quoted_currency": "USD"}
        )
        requests = await asyncio.gather(
            *(
                engine.call(
                    trading.request_operation,
                    PLATFORM,
                    strategy.id,
                    uuid4(),
                    OperationType.ENROLLMENT,
                    _body(codes),
                )
                for codes in (FIRST, SECOND)
            )
        )
        operations = [
            await wait_terminal(trading, operation.id, timeout=120) for operation, _ in requests
        ]

        account = trading._float(PLATFORM, "USD")
        assert account.holds == {}
        assert Decimal(0) <= account.balance <= deposit
        drawn = sum((Decimal(op.float_moves["debit"]) for op in operations), Decimal(0))
        assert drawn <= deposit and account.balance == deposit - drawn

        # Each Operation recorded what the float had left when it reserved: the first to
        # reserve found the whole deposit, the second what the first left.
        first_come = sorted(operations, key=lambda op: -Decimal(op.float_budgets["0"]))
        available = deposit
        for operation in first_come:
            assert operation.status in (OperationStatus.SETTLED, OperationStatus.FAILED)
            assert Decimal(operation.float_budgets["0"]) == available
            codes = FIRST if operation.id == operations[0].id else SECOND
            outcomes = _outcomes(engine, operation.id, operation.chunk_count)
            left = available
            for code in codes:  # request order: first come, first served
                final = outcomes[code]
                if _amount(code) <= left:
                    assert final["outcome"] == "settled", (code, final)
                    left -= _amount(code)
                else:
                    expected = ("rejected", "insufficient_funds")
                    assert (final["outcome"], final["reasons"]) == expected, code
            assert Decimal(operation.float_moves["debit"]) == available - left
            available = left
        assert first_come[0].status is OperationStatus.SETTLED  # some, not all, were funded
        assert first_come[0].counts["rejected"] > 0

        checked, violations = await engine.call(verify, trading)
        assert checked >= 2 and not violations, [describe(v) for v in violations]
