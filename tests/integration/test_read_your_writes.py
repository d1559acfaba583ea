"""An id the projections have not reached yet answers from the event store, not 404."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx
import pytest

from domain import ids
from domain.chunk import OperationChunk, chunk_id
from infra.bootstrap.engine import Engine
from infra.bootstrap.http import create_app
from infra.postgres.platforms import create_platform
from infra.settings import Settings
from tests.e2e.client import SignedClient
from tests.integration.http_world import http_world

pytestmark = pytest.mark.integration
BODY = {
    "allocations": [{"underlying_currency": "BTC", "weight": "1"}],
    "participants": [{"participant_code": "A1", "amount": "10.00"}],
}


async def test_fresh_writes_are_readable_before_any_projection_ran(
    fresh_database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=fresh_database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=f"ryw-{uuid.uuid4().hex[:8]}",
        master_key=base64.b64encode(bytes(range(32))).decode(),
    )
    app = create_app(settings, fresh_database_url, roles=())  # an API process: no consumers
    async with app.router.lifespan_context(app):
        pool = app.state.engine.pool
        mine = await create_platform(pool, "RYW01", "Mine", app.state.secret_box)
        theirs = await create_platform(pool, "RYW02", "Theirs", app.state.secret_box)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            client, other = SignedClient(http, mine), SignedClient(http, theirs)
            strategy = (await client.post("/strategies", {"quoted_currency": "USD"})).json()
            got = await client.get(f"/strategies/{strategy['id']}")
            assert (got.status_code, got.json()) == (200, strategy)
            operation = (await client.post(f"/strategies/{strategy['id']}/enroll", BODY)).json()
            got = await client.get(f"/strategies/operations/{operation['id']}")
            assert got.status_code == 200
            assert (got.json()["id"], got.json()["status"]) == (operation["id"], "validating")
            assert (await client.get("/strategies")).json()["message"] == []  # lists: projections
            assert (await other.get(f"/strategies/{strategy['id']}")).status_code == 404
            assert (await other.get(f"/strategies/operations/{operation['id']}")).status_code == 404
            assert (await client.get(f"/strategies/traders/{uuid.uuid4()}")).status_code == 404


WEIGHTS = (
    [
        {"underlying_currency": "BTC", "weight": "0.6"},
        {"underlying_currency": "ETH", "weight": "0.4"},
    ],
    [
        {"underlying_currency": "BTC", "weight": "0.4"},
        {"underlying_currency": "ETH", "weight": "0.6"},
    ],
)


def _in_scope(engine: Engine, operation_id: str) -> list[str]:
    """The participants the Operation took, read from its chunks on the write side."""
    trading = engine.trading
    operation = trading.operation(uuid.UUID(operation_id))
    codes = []
    for index in range(operation.chunk_count):
        chunk = trading.find(chunk_id(operation.id, index), OperationChunk)
        assert chunk is not None
        codes += [order.code for order in chunk.participant_orders]
    return sorted(codes)


async def test_a_scope_naming_nobody_includes_every_write_answered_before_it(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """PATCH answered 200, then a rebalance naming nobody at once: 50 times, never wrong.
    And a Trader whose enrollment was just reported settled is in the next liquidate-all."""
    async with http_world(fresh_database_url, tmp_path, "RYW03", ["A1", "A2", "A3", "B1"]) as world:
        strategy = await world.strategy()
        enroll = {
            "allocations": WEIGHTS[0],
            "participants": [
                {"participant_code": c, "amount": "10.00", "auto_rebalance": True}
                for c in ("A1", "A2", "A3")
            ],
        }
        enrolled = await world.finished(await world.request(strategy, "enroll", enroll))
        assert enrolled["status"] == "settled"
        trader = str(ids.trader_id(uuid.UUID(strategy), "A2"))

        for attempt in range(50):
            flag = attempt % 2 == 1
            patched = await world.client.request(
                "PATCH", f"/strategies/traders/{trader}", {"auto_rebalance": flag}
            )
            assert patched.status_code == 200, patched.text
            rebalance = await world.request(strategy, "rebalance", {"allocations": WEIGHTS[flag]})
            expected = ["A1", "A2", "A3"] if flag else ["A1", "A3"]
            assert _in_scope(world.engine, rebalance["id"]) == expected, attempt

        late = {
            "allocations": WEIGHTS[0],
            "participants": [{"participant_code": "B1", "amount": "10.00"}],
        }
        assert (await world.finished(await world.request(strategy, "enroll", late)))[
            "status"
        ] == "settled"
        everyone = await world.request(strategy, "liquidate", {"all": True})
        assert _in_scope(world.engine, everyone["id"]) == ["A1", "A2", "A3", "B1"]
