"""The passphrase check, bounded so that one platform's wrong passphrases cannot slow another.

A passphrase is verified with scrypt, ~40 ms of CPU on purpose. Before this module a platform
sending ~22 requests/s with a wrong passphrase ran ~22 scrypts/s in the thread pool every
route shares, and another platform's median create went from 9 ms to 1.3 s. Now:

- a (key, passphrase) pair that verified is remembered (as before), so a good client pays
  scrypt once per key;
- a pair that failed is remembered too, for `STRATEGIES_AUTH_FAILURE_CACHE_TTL_S` (60 s): sent
  again it is refused at once, without scrypt. Both memories hold an HMAC of the stored hash
  and the passphrase under a per-process random key, never the passphrase; since the stored
  hash is part of it, a new or rotated key (a new hash) is never refused from memory;
- each scrypt that fails spends one token of the key's failure budget
  (`STRATEGIES_AUTH_FAILURES_PER_MINUTE`, `STRATEGIES_AUTH_FAILURE_BURST`): once it is spent,
  a passphrase not already verified is a 429 until the budget refills;
- scrypt runs in `STRATEGIES_PASSPHRASE_CHECKS` slots (2) and a platform holds at most
  `STRATEGIES_PASSPHRASE_CHECKS_PER_PLATFORM` (1) of them; the others of that platform wait
  their turn, and past `QUEUE_PER_PLATFORM` waiting it is a 429. So a flooding platform has
  one check running and one waiting for a slot, and another platform waits behind at most
  that one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api.rate_limits import RateLimitedError
from domain.budgets import ExpiringSet, KeyedBuckets
from infra.postgres.secrets_box import verify_passphrase

if TYPE_CHECKING:
    from infra.postgres.platforms import KeyRecord
    from infra.settings_limits import AbuseLimits

QUEUE_PER_PLATFORM = 8
MAX_REMEMBERED = 10_000


@dataclass
class _PlatformTurns:
    slots: asyncio.Semaphore
    pending: int = 0


class PassphraseCheck:
    """One per app. `scrypt_runs` and `refused_from_memory` count what happened, so that
    tests and operators can see scrypt was (not) run."""

    def __init__(self, limits: AbuseLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._memo_key = secrets.token_bytes(32)
        self._verified: dict[str, bytes] = {}
        self._refused = ExpiringSet(limits.failure_cache_ttl_s, MAX_REMEMBERED)
        self._failures = KeyedBuckets(limits.failures_per_key)
        self._slots = asyncio.Semaphore(limits.passphrase_checks)
        self._per_platform = limits.passphrase_checks_per_platform
        self._platforms: dict[str, _PlatformTurns] = {}
        self.scrypt_runs = 0
        self.refused_from_memory = 0

    async def matches(self, record: KeyRecord, passphrase: str) -> bool:
        pair = hmac.digest(
            self._memo_key, f"{record.passphrase_hash}\0{passphrase}".encode(), hashlib.sha256
        )
        known = self._known(record.api_key, pair)
        if known is not None:
            return known
        wait = self._failures.take(record.api_key, self._clock())
        if wait > 0:
            raise RateLimitedError(wait, "Too many wrong passphrases for this api key.")
        failed = False
        try:
            async with self._turn(record.platform_id):
                known = self._known(record.api_key, pair)  # settled while this one waited
                if known is None:
                    self.scrypt_runs += 1
                    known = await asyncio.to_thread(
                        verify_passphrase, record.passphrase_hash, passphrase
                    )
                    failed = not known
        finally:
            if not failed:  # only a scrypt that failed spends the failure budget
                self._failures.refund(record.api_key, self._clock())
        if known:
            self._remember_verified(record.api_key, pair)
        elif failed:
            self._refused.add(pair, self._clock())
        return known

    def _known(self, api_key: str, pair: bytes) -> bool | None:
        verified = self._verified.get(api_key)
        if verified is not None and hmac.compare_digest(verified, pair):
            return True
        if self._refused.holds(pair, self._clock()):
            self.refused_from_memory += 1
            return False
        return None

    def _remember_verified(self, api_key: str, pair: bytes) -> None:
        if len(self._verified) >= MAX_REMEMBERED:
            self._verified.clear()  # bounded; a refill costs one scrypt per key
        self._verified[api_key] = pair

    @asynccontextmanager
    async def _turn(self, platform_id: str) -> AsyncIterator[None]:
        """A slot for one scrypt: the platform's own first, then one of the shared ones, so
        that a platform never waits on the shared slots with more than its share."""
        turns = self._platforms.get(platform_id)
        if turns is None:
            turns = _PlatformTurns(asyncio.Semaphore(self._per_platform))
            self._platforms[platform_id] = turns
        if turns.pending >= self._per_platform + QUEUE_PER_PLATFORM:
            raise RateLimitedError(1, "Too many passphrase checks of this platform are waiting.")
        turns.pending += 1
        try:
            async with turns.slots, self._slots:
                yield
        finally:
            turns.pending -= 1
            if turns.pending == 0:
                del self._platforms[platform_id]
