"""X-REQUEST-ID on the real routes: one request per id and platform, whatever its kind.

A replay answers 200 with the resource and writes nothing; the same id with another body, or
used before for another kind of request, is a 409 `idempotency_conflict` and writes nothing.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from domain import ids
from tests.integration.http_world import http_world

pytestmark = pytest.mark.integration
BTC = [{"underlying_currency": "BTC", "weight": "1"}]


def _enroll(*codes: str) -> dict[str, Any]:
    return {
        "allocations": BTC,
        "participants": [{"participant_code": c, "amount": "10.00"} for c in codes],
    }


async def test_a_request_id_is_one_request_per_platform_across_every_route(
    fresh_database_url: str, tmp_path: Path
) -> None:
    async with http_world(fresh_database_url, tmp_path, "RID01", ["P1", "P2"]) as world:
        client, engine = world.client, world.engine
        reused = str(uuid.uuid4())
        made = await client.post("/strategies", {"quoted_currency": "USD"}, request_id=reused)
        assert made.status_code == 201
        strategy = made.json()["id"]
        position = await engine.call(engine.trading.recorder.max_notification_id)

        enrolled = await client.post(
            f"/strategies/{strategy}/enroll", _enroll("P1"), request_id=reused
        )
        assert enrolled.status_code == 409, enrolled.text
        assert enrolled.json()["code"] == "idempotency_conflict"
        again = await client.post("/strategies", {"quoted_currency": "USD"}, request_id=reused)
        assert (again.status_code, again.json()["id"]) == (200, strategy)
        assert await engine.call(engine.trading.recorder.max_notification_id) == position

        operation_id = str(uuid.uuid4())
        path = f"/strategies/{strategy}/enroll"
        first = await client.post(path, _enroll("P1", "P2"), request_id=operation_id)
        replay = await client.post(path, _enroll("P1", "P2"), request_id=operation_id)
        assert (first.status_code, replay.status_code) == (202, 200)
        assert replay.json()["id"] == first.json()["id"]
        changed = await client.post(path, _enroll("P1"), request_id=operation_id)
        assert changed.status_code == 409 and changed.json()["code"] == "idempotency_conflict"
        rebalance = await client.post(
            f"/strategies/{strategy}/rebalance", {"allocations": BTC}, request_id=operation_id
        )
        assert rebalance.status_code == 409

        assert (await world.finished(first.json()))["status"] == "settled"
        trader = f"/strategies/traders/{ids.trader_id(uuid.UUID(strategy), 'P1')}"
        patch_id = str(uuid.uuid4())
        off = await client.request("PATCH", trader, {"auto_rebalance": False}, request_id=patch_id)
        assert off.status_code == 200 and off.json()["auto_rebalance"] is False
        on = await client.request("PATCH", trader, {"auto_rebalance": True})
        assert on.status_code == 200 and on.json()["auto_rebalance"] is True
        late = await client.request("PATCH", trader, {"auto_rebalance": False}, request_id=patch_id)
        assert late.status_code == 200 and late.json()["auto_rebalance"] is True  # no re-apply
        flipped = await client.request(
            "PATCH", trader, {"auto_rebalance": True}, request_id=patch_id
        )
        assert flipped.status_code == 409
        reused_patch = await client.request(
            "PATCH", trader, {"auto_rebalance": True}, request_id=reused
        )
        assert reused_patch.status_code == 409

        other = await world.another_platform("RID02")
        elsewhere = await other.post("/strategies", {"quoted_currency": "EUR"}, request_id=reused)
        assert elsewhere.status_code == 201  # ids are per platform
