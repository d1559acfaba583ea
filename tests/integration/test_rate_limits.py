"""Request budgets, remembered failures and the failure budget on the real app (issue 15, item
5): the whole pipeline in-process on a real PostgreSQL, budgets set small so that a handful of
requests spends them. Each test signs as a platform of its own, so each starts with full
buckets. Whether scrypt ran is read from the app's own counter (`PassphraseCheck.scrypt_runs`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from api.passphrase_check import PassphraseCheck
from infra.postgres.platforms import rotate_key
from tests.e2e.client import SignedClient
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import World, http_world

if TYPE_CHECKING:
    import httpx

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
KEY_BURST, PLATFORM_BURST, FAILURE_BURST = 6, 9, 2
FAILURE_TTL_S = 1.0
LIMITS = {
    "rate_limit_per_key": 0.5,
    "rate_limit_per_key_burst": KEY_BURST,
    "rate_limit_per_platform": 0.5,
    "rate_limit_per_platform_burst": PLATFORM_BURST,
    "auth_failures_per_minute": 30.0,  # one more failure every 2 s once the burst is spent
    "auth_failure_burst": FAILURE_BURST,
    "auth_failure_cache_ttl_s": FAILURE_TTL_S,
}


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "rate") as url:
        async with http_world(
            url, tmp_path_factory.mktemp("rate-limits"), "RATE00", ["P1"], **LIMITS
        ) as built:
            yield built


def check_of(world: World) -> PassphraseCheck:
    check = world.app.state.passphrase_check
    assert isinstance(check, PassphraseCheck)
    return check


def with_passphrase(client: SignedClient, passphrase: str) -> SignedClient:
    credentials = dataclasses.replace(client.credentials, passphrase=passphrase)
    return SignedClient(client.http, credentials)


def assert_rate_limited(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "rate_limited"
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    return int(retry_after)


async def test_a_key_past_its_budget_gets_a_429_with_retry_after_then_passes_again(
    world: World,
) -> None:
    client = await world.another_platform("RATE01")
    statuses = [(await client.get("/strategies")).status_code for _ in range(KEY_BURST)]
    assert statuses == [200] * KEY_BURST
    refused = await client.get("/strategies")
    retry_after = assert_rate_limited(refused)
    assert retry_after in (1, 2)  # one token at 0.5/s, rounded up to whole seconds
    other = await world.another_platform("RATE02")
    assert (await other.get("/strategies")).status_code == 200  # its own budget
    await asyncio.sleep(retry_after)
    assert (await client.get("/strategies")).status_code == 200


async def test_the_keys_of_one_platform_share_its_budget(world: World) -> None:
    first = await world.another_platform("RATE03")
    second_key = await rotate_key(world.engine.pool, "RATE03", world.secret_box, keep_previous=True)
    second = SignedClient(world.http, second_key)
    for _ in range(KEY_BURST):
        assert (await first.get("/strategies")).status_code == 200
    for _ in range(PLATFORM_BURST - KEY_BURST):
        assert (await second.get("/strategies")).status_code == 200
    refused = await second.get("/strategies")  # the key has room, its platform has not
    assert_rate_limited(refused)
    assert "platform" in refused.json()["detail"]


async def test_a_wrong_passphrase_sent_again_is_refused_without_running_scrypt(
    world: World,
) -> None:
    client = await world.another_platform("RATE04")
    wrong = with_passphrase(client, "not-the-passphrase")
    check = check_of(world)
    runs = check.scrypt_runs
    for _ in range(3):
        answer = await wrong.get("/strategies")
        assert (answer.status_code, answer.json()["code"]) == (401, "invalid_passphrase")
    assert check.scrypt_runs == runs + 1
    assert (await client.get("/strategies")).status_code == 200  # the right one is not blocked
    assert check.scrypt_runs == runs + 2
    await asyncio.sleep(FAILURE_TTL_S)
    answer = await wrong.get("/strategies")
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_passphrase")
    assert check.scrypt_runs == runs + 3  # past its TTL the pair is verified again


async def test_wrong_passphrases_past_the_failure_budget_are_429s_without_scrypt(
    world: World,
) -> None:
    """An attacker that varies the passphrase gets past the memory of failures, not past the
    key's failure budget. A passphrase verified before the attack still passes."""
    client = await world.another_platform("RATE05")
    assert (await client.get("/strategies")).status_code == 200
    check = check_of(world)
    runs = check.scrypt_runs
    for attempt in range(FAILURE_BURST):
        answer = await with_passphrase(client, f"guess-{attempt}").get("/strategies")
        assert answer.json()["code"] == "invalid_passphrase"
    refused = await with_passphrase(client, "guess-more").get("/strategies")
    retry_after = assert_rate_limited(refused)
    assert check.scrypt_runs == runs + FAILURE_BURST
    assert (await client.get("/strategies")).status_code == 200
    await asyncio.sleep(retry_after)
    answer = await with_passphrase(client, "guess-more").get("/strategies")
    assert answer.json()["code"] == "invalid_passphrase"  # the budget refilled: checked
    assert check.scrypt_runs == runs + FAILURE_BURST + 1


def test_every_signed_route_documents_the_429_and_no_other_does(world: World) -> None:
    paths = world.app.openapi()["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            signed = any(p["name"] == "X-SCX-API-KEY" for p in operation.get("parameters", ()))
            assert ("429" in operation["responses"]) == signed, (method, path)
    assert "429" in paths["/strategies"]["post"]["responses"]
    assert "429" not in paths["/health"]["get"]["responses"]
