"""One request, two ways in: the same body over HTTP and over the command topic is the same
command, so a request id used on one way and resent on the other is a replay, not a conflict.

The bodies are spelled as the HTTP API's models read them (defaults written out): that is
the body the fingerprint hashes on both ways in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from infra.bus.messages import Command
from tests.integration.http_world import http_world
from workers.commands import CommandService

pytestmark = pytest.mark.integration

ALLOCATIONS = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.50"},
]


async def test_a_request_id_replays_across_http_and_the_command_topic(
    fresh_database_url: str, tmp_path: Path
) -> None:
    async with http_world(fresh_database_url, tmp_path, "PATHS1", ["P1", "P2"]) as world:
        service = CommandService(world.engine.trading, world.engine.call)
        platform = world.platform_id

        strategy_body: dict[str, Any] = {"quoted_currency": "USD", "metadata": {"label": "x"}}
        request_id = uuid4()
        over_http = await world.client.post(
            "/strategies", strategy_body, request_id=str(request_id)
        )
        assert over_http.status_code == 201, over_http.text
        over_kafka = await service.execute(
            platform, request_id, Command(command="create_strategy", body=strategy_body)
        )
        assert over_kafka.outcome == "replayed", over_kafka
        assert over_kafka.resource is not None
        assert over_kafka.resource["id"] == over_http.json()["id"]
        strategy_id = UUID(over_http.json()["id"])

        enroll = {
            "allocations": ALLOCATIONS,
            "participants": [
                {"participant_code": "P1", "amount": "100.00", "auto_rebalance": True},
                {"participant_code": "P2", "amount": "50", "auto_rebalance": False},
            ],
        }
        request_id = uuid4()
        first = await service.execute(
            platform, request_id, Command(command="enroll", strategy_id=strategy_id, body=enroll)
        )
        assert first.outcome == "accepted", first
        assert first.resource is not None
        again = await world.client.post(
            f"/strategies/{strategy_id}/enroll", enroll, request_id=str(request_id)
        )
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.resource["id"]

        liquidate = {"participants": [{"participant_code": "P2"}], "all": False}
        request_id = uuid4()
        over_http = await world.client.post(
            f"/strategies/{strategy_id}/liquidate", liquidate, request_id=str(request_id)
        )
        assert over_http.status_code == 202, over_http.text
        over_kafka = await service.execute(
            platform,
            request_id,
            Command(command="liquidate", strategy_id=strategy_id, body=liquidate),
        )
        assert over_kafka.outcome == "replayed", over_kafka
        assert over_kafka.resource is not None
        assert over_kafka.resource["id"] == over_http.json()["id"]
