"""Many Operations at once, over HTTP and over the Kafka command topic, on the same and on
different Strategies with overlapping participants: no Trader is ever in two Operations at
once, no update is lost, nothing deadlocks, and every Operation ends terminal."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain import ids
from domain.statuses import OperationType
from infra.bootstrap.http import create_app
from infra.eventstore.store import PostgresTrading
from infra.postgres.platforms import create_platform
from infra.settings import Settings
from tests.cli import run_cli
from tests.e2e.client import SignedClient
from tests.integration.pipeline.harness import BLUE_CHIP, CommandClient, wait_terminal

pytestmark = pytest.mark.integration
PLATFORM = "PARALLEL01"  # an HTTP platform id (the harness's own is not one)
CODES = [f"P{i:03d}" for i in range(90)]
FIRST, SECOND = CODES[:60], CODES[30:]  # the two Strategies share P030-P059
TILTED = [
    {"underlying_currency": "BTC", "weight": "0.25"},
    {"underlying_currency": "ETH", "weight": "0.25"},
    {"underlying_currency": "SOL", "weight": "0.50"},
]


def funded(codes: list[str], amount: str = "100.00") -> dict[str, Any]:
    participants = [{"participant_code": c, "amount": amount} for c in codes]
    return {"allocations": BLUE_CHIP, "participants": participants}


async def test_parallel_operations_over_http_and_kafka_never_share_a_trader(
    fresh_database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    settings = Settings(
        data_dir=tmp_path,
        database_url=fresh_database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"par-{uuid.uuid4().hex[:8]}",
        master_key=key,
        chunk_size=10,  # many chunks, so the Operations interleave stage by stage
    )
    app = create_app(settings, fresh_database_url, roles=("all",))
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        trading: PostgresTrading = engine.trading
        credentials = await create_platform(engine.pool, PLATFORM, "Parallel", app.state.secret_box)
        await engine.call(trading.register_participants, PLATFORM, CODES)
        await engine.call(trading.deposit_float, PLATFORM, "USD", Decimal("1000000.00"), "IT")
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://api") as http,
            CommandClient(kafka_bootstrap, engine.topics, PLATFORM) as kafka,
        ):
            api = SignedClient(http, credentials)
            one = await _http(api, "/strategies", {"quoted_currency": "USD"})
            two = await _http(api, "/strategies", {"quoted_currency": "USD"})
            enrolled = await asyncio.gather(
                _http(api, f"/strategies/{one}/enroll", funded(FIRST)),
                _kafka(kafka, "enroll", two, funded(SECOND)),
            )
            for operation_id in enrolled:
                await wait_terminal(trading, operation_id, timeout=180)

            # Eight at once: four on each Strategy, half over HTTP and half over Kafka, with
            # overlapping participants within a Strategy (and across, by participant code).
            leaving = {"participants": [{"participant_code": c} for c in CODES[80:90]]}
            launched = await asyncio.gather(
                _http(api, f"/strategies/{one}/top-up", funded(CODES[0:40], "50.00")),
                _kafka(kafka, "top_up", one, funded(CODES[20:60], "25.00")),
                _http(api, f"/strategies/{one}/rebalance", {"allocations": TILTED}),
                _kafka(kafka, "partial_sell", one, funded(CODES[10:30], "20.00")),
                _kafka(kafka, "top_up", two, funded(CODES[30:70], "40.00")),
                _http(api, f"/strategies/{two}/partial-sell", funded(CODES[50:90], "10.00")),
                _kafka(kafka, "rebalance", two, {"allocations": TILTED}),
                _http(api, f"/strategies/{two}/liquidate", leaving),
            )
            finished = [await wait_terminal(trading, o, timeout=300) for o in launched]

        assert all(o.status.terminal for o in finished)
        for operation in finished:  # every participant accounted for, once
            counts = operation.counts
            decided = counts["settled"] + counts["rejected"] + counts["skipped"]
            assert decided == operation.participant_count, (operation.type, counts)
        overlaps = await asyncio.to_thread(_holds_never_overlap, trading, [one, two])
        assert Counter(o.type for o in finished) == {
            OperationType.TOP_UP: 3,
            OperationType.REBALANCE: 2,
            OperationType.PARTIAL_SELL: 2,
            OperationType.LIQUIDATION: 1,
        }
        rejected = sum(o.counts["rejected"] for o in finished)
        settled = sum(o.counts["settled"] for o in finished)
        print(
            f"parallel: {len(finished)} operations, {overlaps} holds, {settled} settled, "
            f"{rejected} rejected (a Trader already held by another Operation)"
        )
        assert settled > 0
        audit = await asyncio.to_thread(
            run_cli,
            {"DATABASE_URL": fresh_database_url, "PATH": "/usr/bin:/bin"},
            "audit",
            "verify",
            timeout=300,
        )
        assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-3000:]


async def _http(api: SignedClient, path: str, body: dict[str, Any]) -> UUID:
    answer = await api.post(path, body)
    assert answer.status_code in (201, 202), answer.text
    return UUID(answer.json()["id"])


async def _kafka(kafka: CommandClient, command: str, strategy: UUID, body: dict[str, Any]) -> UUID:
    result = await kafka.send(command, body, strategy_id=strategy)
    assert result.outcome == "accepted" and result.resource is not None, result
    return UUID(result.resource["id"])


def _holds_never_overlap(trading: PostgresTrading, strategies: list[UUID]) -> int:
    """Each Trader's history alternates hold, then that same Operation's settlement or
    release: a second hold while one is open would be a Trader in two Operations at once.
    Every hold is closed by the end (nobody half-executed, no hold left behind)."""
    checked = 0
    for strategy in strategies:
        for code in CODES:
            open_in: UUID | None = None
            for event in trading.events.get(ids.trader_id(strategy, code)):
                name = type(event).__name__
                if name == "HoldPlaced":
                    assert open_in is None, (code, "held twice", open_in)
                    open_in = event.operation_id  # type: ignore[attr-defined]
                    checked += 1
                elif name in ("Settled", "HoldReleased"):
                    assert open_in == event.operation_id, (code, name)  # type: ignore[attr-defined]
                    open_in = None
            assert open_in is None, (code, "hold left open")
    return checked
