"""Deterministic ids (spec §11.4): a replayed request finds the aggregate it made.

Each kind of id has its own namespace so that two kinds never collide on the same name.
"""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

_ROOT = UUID("6f1c2a4e-93d1-4c5b-8e0a-2b7d4f9c1e35")
STRATEGY_NS = uuid5(_ROOT, "strategy")
OPERATION_NS = uuid5(_ROOT, "operation")
TRADER_NS = uuid5(_ROOT, "trader")
EXECUTION_NS = uuid5(_ROOT, "execution")
PARTICIPANT_NS = uuid5(_ROOT, "participant")
FLOAT_NS = uuid5(_ROOT, "float-account")
REQUEST_NS = uuid5(_ROOT, "request-key")
DEPOSIT_NS = uuid5(_ROOT, "float-deposit")
CATALOGUE_ID = uuid5(_ROOT, "instrument-catalogue")
POLICY_RUN_NS = uuid5(_ROOT, "policy-run")
#: The per-Trader ids are derived again at every stage of every Operation (a SHA-1 and two
#: UUID formattings each): remembered for about a 100,000-Trader Strategy's worth.
_PER_TRADER = 2**17


def strategy_id(platform_id: str, request_id: UUID) -> UUID:
    return uuid5(STRATEGY_NS, f"{platform_id}:{request_id}")


def operation_id(platform_id: str, request_id: UUID) -> UUID:
    return uuid5(OPERATION_NS, f"{platform_id}:{request_id}")


@lru_cache(maxsize=_PER_TRADER)
def trader_id(strategy: UUID, participant_code: str) -> UUID:
    return uuid5(TRADER_NS, f"{strategy}:{participant_code}")


@lru_cache(maxsize=_PER_TRADER)
def execution_id(operation: UUID, participant_code: str) -> UUID:
    return uuid5(EXECUTION_NS, f"{operation}:{participant_code}")


@lru_cache(maxsize=_PER_TRADER)
def participant_id(platform_id: str, participant_code: str) -> UUID:
    return uuid5(PARTICIPANT_NS, f"{platform_id}:{participant_code}")


def float_account_id(platform_id: str, currency: str) -> UUID:
    return uuid5(FLOAT_NS, f"{platform_id}:{currency}")


def float_deposit_id(platform_id: str, currency: str, reference: str) -> UUID:
    """One per deposit reference of a float account: see `domain.float_account.FloatDeposit`."""
    return uuid5(DEPOSIT_NS, f"{platform_id}:{currency}:{reference}")


def request_key_id(platform_id: str, request_id: UUID) -> UUID:
    """One per (platform, X-REQUEST-ID), whatever the request: see `domain.request_key`."""
    return uuid5(REQUEST_NS, f"{platform_id}:{request_id}")


def policy_run_request_id(strategy: UUID, period: str) -> UUID:
    """The X-REQUEST-ID of a Strategy's automatic run for one calendar period: the same on
    every attempt, so a restarted scheduler meets its earlier run as a replay. Shaped as a
    version 4 UUID, like every request id a platform sends (the bytes are a hash, not random:
    the version and variant bits are set on it)."""
    digest = uuid5(POLICY_RUN_NS, f"{strategy}:{period}")
    return UUID(bytes=digest.bytes, version=4)
