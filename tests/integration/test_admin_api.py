"""The admin API refuses what the platform API refuses, on the real routes and PostgreSQL:
codes that are not printable and bounded, asset codes outside A-Z0-9, unknown platforms; and a
float deposit's reference is its idempotency key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from domain import ids
from domain.eligibility import ParticipantStatus
from domain.float_account import FloatAccount
from domain.reference import Participant
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import PAYLOAD_TYPES, World, http_world

pytestmark = pytest.mark.integration

PLATFORM = "ADMIN1"
UNKNOWN = "NOPE01"


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "admin") as url:
        async with http_world(url, tmp_path_factory.mktemp("admin"), PLATFORM, ["A1"]) as built:
            yield built


def refused(answer: Any, status: int, code: str, fields: list[str]) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["code"] == code, problem
    assert [e["field"] for e in problem.get("errors", [])] == fields, problem


def listing(asset: str) -> dict[str, Any]:
    return {"asset": asset, "quoted_currency": "USD", "precision": 8, "min_notional": "1.00"}


@pytest.mark.parametrize(
    "asset", ["BT\u0000C", "btc", "BTC ", "", "B" * 17, "BTC/USD", "\u0042\u0301TC", "ＢTC"]
)
async def test_an_instrument_whose_asset_is_not_a_to_z_or_digits_is_refused(
    world: World, asset: str
) -> None:
    body = {"instruments": [listing("XRP"), listing(asset)]}
    answer = await world.http.put("/admin/instruments", json=body, headers=world.admin)
    refused(answer, 400, "invalid_request", ["instruments[1].asset"])
    catalogue = await world.engine.call(world.engine.trading.catalogue)
    assert "XRP/USD" not in catalogue.instruments  # nothing of the refused request is listed


async def test_an_instrument_in_an_unknown_currency_is_refused_with_its_path(
    world: World,
) -> None:
    body = {"instruments": [{**listing("XRP"), "quoted_currency": "US\u0000D"}]}
    answer = await world.http.put("/admin/instruments", json=body, headers=world.admin)
    refused(answer, 400, "invalid_request", ["instruments[0].quoted_currency"])


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"participant_code": "P\u00001"}, "participants[1].participant_code"),
        ({"participant_code": "P\u001b[31m"}, "participants[1].participant_code"),
        ({"participant_code": " P1"}, "participants[1].participant_code"),
        ({"participant_code": "P" * 65}, "participants[1].participant_code"),
        ({"participant_code": "P2", "restricted_assets": ["SOL", "s\u0000l"]},
         "participants[1].restricted_assets[1]"),
    ],
)  # fmt: skip
async def test_participant_codes_and_restricted_assets_are_checked_like_the_platform_api(
    world: World, entry: dict[str, Any], field: str
) -> None:
    body = {"participants": [{"participant_code": "OK1"}, entry]}
    answer = await world.http.put(
        f"/admin/platforms/{PLATFORM}/participants", json=body, headers=world.admin
    )
    refused(answer, 400, "invalid_request", [field])
    found = await world.engine.call(
        world.engine.trading.find, ids.participant_id(PLATFORM, "OK1"), Participant
    )
    assert found is None


async def test_a_deposit_needs_a_printable_reference_and_a_known_currency(world: World) -> None:
    base = f"/admin/platforms/{PLATFORM}/float-deposits"
    for body, field in [
        ({"currency": "USD", "amount": "1.00", "reference": "W\u00001"}, "reference"),
        ({"currency": "USD", "amount": "1.00", "reference": "R" * 129}, "reference"),
        ({"currency": "USD", "amount": "1.00", "reference": ""}, "reference"),
        ({"currency": "U\u0000SD", "amount": "1.00", "reference": "W-CUR"}, "currency"),
    ]:
        refused(await world.http.post(base, json=body, headers=world.admin), 400,
                "invalid_request", [field])  # fmt: skip


async def test_the_same_deposit_twice_credits_once_and_another_amount_is_a_conflict(
    world: World,
) -> None:
    base = f"/admin/platforms/{PLATFORM}/float-deposits"
    before = await world.engine.call(world.engine.trading._float, PLATFORM, "USD")
    wire = {"currency": "USD", "amount": "250.00", "reference": "WIRE-2026-0001"}
    first = await world.http.post(base, json=wire, headers=world.admin)
    assert first.status_code == 201, first.text
    assert first.json()["balance"] == str(before.balance + 250)
    again = await world.http.post(base, json=wire, headers=world.admin)
    assert (again.status_code, again.json()) == (200, first.json())
    other = await world.http.post(base, json={**wire, "amount": "25.00"}, headers=world.admin)
    refused(other, 409, "idempotency_conflict", ["reference"])
    after = await world.engine.call(world.engine.trading._float, PLATFORM, "USD")
    assert after.balance == before.balance + 250
    second = await world.http.post(
        base, json={**wire, "reference": "WIRE-2026-0002"}, headers=world.admin
    )
    assert second.status_code == 201 and second.json()["balance"] == str(before.balance + 500)


async def test_an_unknown_platform_gets_no_float_participants_or_webhooks(world: World) -> None:
    base = f"/admin/platforms/{UNKNOWN}"
    deposit = {"currency": "USD", "amount": "1.00", "reference": "W-UNKNOWN"}
    participants = {"participants": [{"participant_code": "X1"}]}
    hook = {"url": "https://hooks.example.com/h", "payload_types": PAYLOAD_TYPES}
    for method, path, body in [
        ("POST", f"{base}/float-deposits", deposit),
        ("PUT", f"{base}/participants", participants),
        ("POST", f"{base}/webhooks", hook),
    ]:
        answer = await world.http.request(method, path, json=body, headers=world.admin)
        refused(answer, 404, "platform_not_found", ["platform_id"])
    trading = world.engine.trading
    assert await world.engine.call(
        trading.find, ids.float_account_id(UNKNOWN, "USD"), FloatAccount
    ) is None  # fmt: skip
    assert await world.engine.call(
        trading.find, ids.participant_id(UNKNOWN, "X1"), Participant
    ) is None  # fmt: skip
    listed = await world.http.get(f"{base}/webhooks", headers=world.admin)
    assert listed.json() == []
    bad_id = await world.http.put(
        "/admin/platforms/A%00B/participants", json=participants, headers=world.admin
    )
    refused(bad_id, 400, "invalid_request", ["platform_id"])


async def test_participants_of_a_registered_platform_are_still_set(world: World) -> None:
    body = {"participants": [{"participant_code": "A2", "restricted_assets": ["SOL"]}]}
    answer = await world.http.put(
        f"/admin/platforms/{PLATFORM}/participants", json=body, headers=world.admin
    )
    assert (answer.status_code, answer.json()) == (200, {"changed": 1})
    found = await world.engine.call(
        world.engine.trading.find, ids.participant_id(PLATFORM, "A2"), Participant
    )
    assert found is not None and found.status is ParticipantStatus.ACTIVE
    assert found.restricted_assets == ["SOL"]


async def test_the_same_deposit_sent_twice_at_once_credits_once(world: World) -> None:
    base = f"/admin/platforms/{PLATFORM}/float-deposits"
    before = await world.engine.call(world.engine.trading._float, PLATFORM, "USD")
    wire = {"currency": "USD", "amount": "10.00", "reference": "WIRE-RACE"}
    answers = await asyncio.gather(
        *(world.http.post(base, json=wire, headers=world.admin) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], answers
    after = await world.engine.call(world.engine.trading._float, PLATFORM, "USD")
    assert after.balance == before.balance + 10


REFUSED_ANYWHERE = [
    "https://user:pass@hooks.example.com/h",
    "https://hooks.example.com@169.254.169.254/h",
    "https://2130706433/h",
    "https://0x7f.0.0.1/h",
    "https://0177.0.0.1/h",
    "https://127.1/h",
    "ftp://hooks.example.com/h",
    "https://hooks.example.com\\@10.0.0.1/h",
]
REFUSED_BY_DEFAULT = [
    "http://hooks.example.com/h",
    "https://127.0.0.1/h",
    "https://[::1]/h",
    "https://[::ffff:127.0.0.1]/h",
    "https://[::ffff:a9fe:a9fe]/h",
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.1/h",
    "https://172.16.5.4/h",
    "https://192.168.1.1/h",
    "https://100.64.0.1/h",
    "https://224.0.0.1/h",
    "https://240.0.0.1/h",
    "https://0.0.0.0/h",
    "https://localhost/h",
    "https://metadata/h",
    "https://db.internal/h",
]


async def subscribe(world: World, url: str) -> Any:
    return await world.http.post(
        f"/admin/platforms/{world.platform_id}/webhooks",
        json={"url": url, "payload_types": PAYLOAD_TYPES},
        headers=world.admin,
    )


async def test_webhook_urls_are_https_to_public_hosts_by_default(
    fresh_database_url: str, tmp_path: Any
) -> None:
    async with http_world(
        fresh_database_url, tmp_path, "HOOKS1", [], webhook_allow_private=False
    ) as public:
        for url in REFUSED_ANYWHERE + REFUSED_BY_DEFAULT:
            refused(await subscribe(public, url), 400, "invalid_webhook_url", ["url"])
        accepted = await subscribe(public, "https://hooks.example.com:8443/strategies?x=1")
        assert accepted.status_code == 201, accepted.text
        listed = await public.http.get("/admin/platforms/HOOKS1/webhooks", headers=public.admin)
        assert [s["url"] for s in listed.json()] == [
            "https://hooks.example.com:8443/strategies?x=1"
        ]


async def test_allowing_private_targets_still_refuses_credentials_and_numeric_hosts(
    world: World,
) -> None:
    for url in REFUSED_ANYWHERE:
        refused(await subscribe(world, url), 400, "invalid_webhook_url", ["url"])
    allowed = await subscribe(world, "http://127.0.0.1:9/hooks")
    assert allowed.status_code == 201, allowed.text
