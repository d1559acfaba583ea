"""The `preview` command on the command topic: answered on `command-results` with the preview
as its resource (or `rejected` with the domain's error), written nowhere, keyed by nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from domain.commands import PREVIEW_MAX_SIZE, build_preview
from domain.errors import InvalidRequestError
from domain.services import Trading
from infra.bus import Delivery, Record
from infra.bus.memory import InProcessBus
from infra.bus.messages import Command, CommandResult
from infra.bus.topic_names import PLATFORM_HEADER, Topics
from projections.queries import MAX_SIZE
from tests.unit.domain.flows import BLUE_CHIP, PLATFORM, PRICES, funded, new_app, new_strategy
from workers.commands import CommandService, command_consumer

WAIT = 10.0
TOPICS = Topics("unit")
AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


class Quotes:
    """Indicative prices as the venue gives them; firm quotes are never asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    async def indicative(
        self, quoted_currency: str, assets: Sequence[str]
    ) -> Mapping[str, Decimal]:
        self.asked.append((quoted_currency, tuple(assets)))
        return {a: p for a, p in PRICES.items() if a in assets}

    async def firm_quote(self, *args: Any) -> Any:
        raise AssertionError("a preview locks no quote")


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(partitions=1, retry_initial=0.01, retry_max=0.02, graceful_timeout=WAIT)
    yield bus
    await bus.stop()


async def answered(bus: InProcessBus, app: Trading, record: Command) -> CommandResult:
    results: asyncio.Queue[CommandResult] = asyncio.Queue()

    async def result(delivery: Delivery) -> None:
        await results.put(CommandResult.model_validate_json(delivery.value))

    service = CommandService(app, call, Quotes(), clock=lambda: AT)
    bus.subscribe(TOPICS.commands, "commands", command_consumer(service, bus, TOPICS))
    bus.subscribe(TOPICS.command_results, "test", result)
    await bus.start()
    key = str(uuid4())
    await bus.publish(
        Record(TOPICS.commands, record.encode(), key=key, headers={PLATFORM_HEADER: PLATFORM})
    )
    got = await asyncio.wait_for(results.get(), WAIT)
    assert got.request_id == key
    return got


async def test_a_preview_command_is_answered_with_the_preview_and_writes_nothing(
    bus: InProcessBus,
) -> None:
    app = new_app(chunk_size=2)
    app.register_participants(PLATFORM, ["K1", "K2", "K3"])
    strategy = new_strategy(app)
    before = app.recorder.max_notification_id()
    enroll = {"allocations": BLUE_CHIP, "participants": funded(["K1", "K2", "K3", "K4"])}
    body = {"type": "enroll", "body": enroll, "page": 2, "size": 3}
    result = await answered(
        bus, app, Command(command="preview", strategy_id=strategy.id, body=body)
    )

    assert app.recorder.max_notification_id() == before
    assert (result.outcome, result.resource_type, result.command) == (
        "accepted",
        "preview",
        "preview",
    )
    resource = result.resource
    assert resource is not None
    summary = resource["summary"]
    assert summary["counts"] == {"approved": 3, "rejected": 1, "skipped": 0}
    assert summary["reasons"] == {"participant_ineligible": 1}
    assert summary["float"]["needed"] == "3000.00"
    assert summary["priced_at"] == "2026-12-07T09:30:00Z"
    assert summary["prices"] == {a: str(p) for a, p in sorted(PRICES.items())}
    assert (resource["page"], resource["size"], resource["total_pages"]) == (2, 3, 2)
    assert [p["participant_code"] for p in resource["message"]] == ["K4"]
    assert resource["message"][0]["status_reasons"] == ["participant_ineligible"]


async def test_a_summary_only_preview_carries_no_participants(bus: InProcessBus) -> None:
    app = new_app()
    strategy = new_strategy(app)
    body = {"type": "liquidate", "body": {"all": True}, "summary_only": True}
    result = await answered(
        bus, app, Command(command="preview", strategy_id=strategy.id, body=body)
    )
    assert result.resource is not None and result.resource["message"] is None
    assert result.resource["summary"]["participant_count"] == 0


async def test_a_bad_preview_is_rejected_with_the_requests_own_error(bus: InProcessBus) -> None:
    app = new_app()
    strategy = new_strategy(app)
    body = {"type": "rebalance", "body": {"allocations": [{"underlying_currency": "BTC"}]}}
    result = await answered(
        bus, app, Command(command="preview", strategy_id=strategy.id, body=body)
    )
    assert result.outcome == "rejected" and result.error is not None
    assert result.error.code == "invalid_allocations"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "type"),
        ({"type": "create_strategy"}, "type"),
        ({"type": "rebalance", "body": []}, "body"),
        ({"type": "rebalance", "summary_only": "yes"}, "summary_only"),
        ({"type": "rebalance", "page": 0}, "page"),
        ({"type": "rebalance", "size": PREVIEW_MAX_SIZE + 1}, "size"),
        ({"type": "rebalance", "size": True}, "size"),
    ],
)
def test_a_preview_record_names_the_part_to_fix(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        build_preview(uuid4(), body)
    assert [e.field for e in refused.value.errors] == [field]


def test_a_preview_pages_within_the_lists_bounds() -> None:
    assert PREVIEW_MAX_SIZE == MAX_SIZE
