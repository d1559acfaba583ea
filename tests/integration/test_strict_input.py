"""Money strings and request bodies are read one strict way on every way in: the platform API,
the admin API, the command topic's service and the CLI.

Only `123` or `123.45` in ASCII digits is an amount (domain.money.parse_decimal); a body
nested deeper than the fingerprint's limit, or metadata deeper or larger than a Strategy's,
is a 400 with the field named, never a 500.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from domain.fingerprint import MAX_DEPTH
from domain.services import MAX_METADATA_BYTES, MAX_METADATA_DEPTH
from infra.bus.messages import Command
from tests.cli import run_cli
from tests.integration.http_world import http_world
from workers.commands import CommandService

pytestmark = pytest.mark.integration

LOOSE = ["1_000", "\u0661\u0660\u0660", "\uff11\uff10\uff10", "+1", "1.", ".5", " 7 ", "1e2"]
BTC = [{"underlying_currency": "BTC", "weight": "1"}]


def nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


def nested_text(levels: int) -> bytes:
    """The JSON text of `nested(levels)`, written out (json.dumps itself recurses)."""
    return ('{"k":' * levels + '"leaf"' + "}" * levels).encode()


async def test_loose_money_strings_and_deep_bodies_are_refused_over_http_and_commands(
    fresh_database_url: str, tmp_path: Path
) -> None:
    async with http_world(fresh_database_url, tmp_path, "STRICT1", ["P1"]) as world:
        strategy = await world.strategy()
        service = CommandService(world.engine.trading, world.engine.call)
        for loose in LOOSE:
            body = {
                "allocations": BTC,
                "participants": [{"participant_code": "P1", "amount": loose}],
            }
            refused = await world.client.post(f"/strategies/{strategy}/enroll", body)
            assert refused.status_code == 400, (loose, refused.text)
            fields = [e["field"] for e in refused.json()["errors"]]
            assert fields == ["participants[0].amount"], (loose, fields)
            command = Command(command="enroll", strategy_id=strategy, body=body)
            result = await service.execute(world.platform_id, uuid4(), command)
            assert result.outcome == "rejected" and result.error is not None, loose
            assert [e.field for e in result.error.errors] == ["participants[0].amount"]

            weights = {"allocations": [{"underlying_currency": "BTC", "weight": loose}]}
            refused = await world.client.post(f"/strategies/{strategy}/rebalance", weights)
            assert refused.status_code == 400, (loose, refused.text)
            deposit = {"currency": "USD", "amount": loose, "reference": f"R-{uuid4()}"}
            refused = await world.http.post(
                f"/admin/platforms/{world.platform_id}/float-deposits",
                json=deposit,
                headers=world.admin,
            )
            assert refused.status_code == 400, (loose, refused.text)

        number = {"allocations": BTC, "participants": [{"participant_code": "P1", "amount": 100}]}
        refused = await world.client.post(f"/strategies/{strategy}/enroll", number)
        assert refused.status_code == 400  # a JSON number has already lost the exact value

        for levels in (MAX_METADATA_DEPTH + 1, 600, 940, 5000):
            raw = b'{"quoted_currency":"USD","metadata":' + nested_text(levels) + b"}"
            deep = await world.client.request("POST", "/strategies", raw=raw)
            assert deep.status_code == 400, (levels, deep.status_code, deep.text[:200])
        command = Command(
            command="create_strategy", body={"quoted_currency": "USD", "x": nested(MAX_DEPTH + 5)}
        )
        result = await service.execute(world.platform_id, uuid4(), command)
        assert result.error is not None and result.error.code == "invalid_request"

        label = "x" * (MAX_METADATA_BYTES - len('{"label":""}'))
        fits = await world.client.post(
            "/strategies", {"quoted_currency": "USD", "metadata": {"label": label}}
        )
        assert fits.status_code == 201, fits.text
        too_big = await world.client.post(
            "/strategies", {"quoted_currency": "USD", "metadata": {"label": label + "x"}}
        )
        assert too_big.status_code == 400
        assert too_big.json()["errors"][0]["field"] == "metadata"


def test_the_cli_reads_amounts_the_same_strict_way(fresh_database_url: str) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database_url,
        "STRATEGIES_MASTER_KEY": base64.b64encode(bytes(range(32))).decode(),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    made = run_cli(env, "platform", "create", "STRICT2", "--name", "Strict", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)
    for loose in LOOSE:
        done: subprocess.CompletedProcess[str] = run_cli(
            env, "float", "deposit", "STRICT2", "USD", loose, "--reference", "W1"
        )
        assert done.returncode == 2, (loose, done.stdout, done.stderr)
        assert "amount" in done.stderr, (loose, done.stderr)
    accepted = run_cli(env, "float", "deposit", "STRICT2", "USD", "1000.00", "--reference", "W1")
    assert accepted.returncode == 0, accepted.stderr
