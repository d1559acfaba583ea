"""An id the projections have not reached yet answers from the event store, not 404."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import httpx
import pytest

from api.main import create_app
from infra.platforms import create_platform
from infra.settings import Settings
from tests.e2e.client import SignedClient

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
