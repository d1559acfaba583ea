"""The bounded passphrase check (`api.passphrase_check`) and the request budgets
(`api.rate_limits`), with real scrypt hashes and a clock the test moves."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from api.passphrase_check import QUEUE_PER_PLATFORM, PassphraseCheck
from api.rate_limits import RateLimitedError, RequestBudgets
from domain.budgets import Rate
from infra.postgres.platforms import KeyRecord
from infra.postgres.secrets_box import hash_passphrase
from infra.settings_limits import DEFAULT_ABUSE_LIMITS, AbuseLimits

GOOD = "the-right-passphrase"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(**changes: object) -> AbuseLimits:
    return dataclasses.replace(DEFAULT_ABUSE_LIMITS, **changes)  # type: ignore[arg-type]


def record(platform_id: str = "PLATB", api_key: str = "key-b") -> KeyRecord:
    return KeyRecord(api_key, platform_id, "active", b"s" * 32, hash_passphrase(GOOD))


async def test_a_pair_that_failed_is_refused_again_without_scrypt_until_its_ttl() -> None:
    clock = Clock()
    check = PassphraseCheck(limits(failure_cache_ttl_s=60.0), clock)
    key = record()
    assert not await check.matches(key, "wrong")
    assert not await check.matches(key, "wrong")
    assert (check.scrypt_runs, check.refused_from_memory) == (1, 1)
    assert await check.matches(key, GOOD)  # another pair: not refused
    clock.now += 60.0
    assert not await check.matches(key, "wrong")
    assert check.scrypt_runs == 3  # the TTL passed: verified again


async def test_a_new_hash_under_the_same_key_is_never_refused_from_memory() -> None:
    check = PassphraseCheck(limits(), Clock())
    old = record()
    assert not await check.matches(old, "reissued")
    reissued = KeyRecord(
        old.api_key, old.platform_id, "active", old.secret, hash_passphrase("reissued")
    )
    assert await check.matches(reissued, "reissued")


async def test_a_verified_pair_is_remembered_and_never_spends_the_failure_budget() -> None:
    check = PassphraseCheck(limits(failures_per_key=Rate(1 / 60, 1)), Clock())
    key = record()
    for _ in range(3):
        assert await check.matches(key, GOOD)
    assert check.scrypt_runs == 1
    assert not await check.matches(key, "wrong")  # the one token was still there


async def test_failures_past_the_budget_are_429s_without_scrypt_until_it_refills() -> None:
    clock = Clock()
    check = PassphraseCheck(limits(failures_per_key=Rate(per_second=0.1, burst=2)), clock)
    key = record()
    assert await check.matches(key, GOOD)  # verified before the attack
    assert not await check.matches(key, "wrong-1")
    assert not await check.matches(key, "wrong-2")
    with pytest.raises(RateLimitedError) as refused:
        await check.matches(key, "wrong-3")
    assert (refused.value.status, refused.value.code) == (429, "rate_limited")
    assert refused.value.headers == {"Retry-After": "10"}
    assert check.scrypt_runs == 3
    assert await check.matches(key, GOOD)  # the verified pair still passes
    assert not await check.matches(key, "wrong-1")  # and remembered failures stay 401s
    other = record(api_key="key-b2")
    assert await check.matches(other, GOOD)  # the budget is the key's
    clock.now += 10.0
    assert not await check.matches(key, "wrong-3")
    assert check.scrypt_runs == 5


async def test_a_platform_has_one_check_running_and_a_bounded_queue() -> None:
    """A flooding platform B holds one of the two slots and queues behind itself; A's check,
    sent after B's whole queue, is done before B's queue is (order, not time, is asserted)."""
    check = PassphraseCheck(limits(failures_per_key=Rate(1.0, 100)), Clock())
    b, a = record("PLATB", "key-b"), record("PLATA", "key-a")
    done: list[str] = []

    async def attempt(key: KeyRecord, passphrase: str, name: str) -> None:
        try:
            await check.matches(key, passphrase)
            done.append(name)
        except RateLimitedError:
            done.append(f"{name}:429")

    flood = [asyncio.create_task(attempt(b, f"wrong-{i}", f"b{i}")) for i in range(12)]
    await asyncio.sleep(0)  # every B attempt is queued (or refused) before A arrives
    await asyncio.gather(attempt(a, GOOD, "a"), *flood)
    refused = [name for name in done if name.endswith(":429")]
    assert len(refused) == 12 - 1 - QUEUE_PER_PLATFORM
    assert done.index("a") < len(refused) + 3, done  # behind B's running check at most
    assert check.scrypt_runs == 1 + 1 + QUEUE_PER_PLATFORM


def test_a_request_takes_from_the_key_and_the_platform_or_from_neither() -> None:
    clock = Clock()
    budgets = RequestBudgets(
        limits(per_key=Rate(per_second=1, burst=2), per_platform=Rate(per_second=0.4, burst=3)),
        clock,
    )
    budgets.admit("k1", "P")
    budgets.admit("k1", "P")
    with pytest.raises(RateLimitedError) as key_spent:
        budgets.admit("k1", "P")
    assert key_spent.value.headers == {"Retry-After": "1"}
    assert "api key" in key_spent.value.detail
    budgets.admit("k2", "P")  # the platform's third
    with pytest.raises(RateLimitedError) as platform_spent:
        budgets.admit("k3", "P")
    assert platform_spent.value.headers == {"Retry-After": "3"}  # 2.5 s, rounded up
    assert "platform" in platform_spent.value.detail
    budgets.admit("k4", "Q")  # another platform is untouched
    clock.now += 2.5
    budgets.admit("k3", "P")  # k3 was refused above, so nothing was taken from it
    assert budgets.refused == 2
