"""The aggregate cache's own rules: copies share nothing mutable, the size is a bound, and an
older version never replaces a newer one."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from domain.statuses import OperationType
from domain.trader import Trader
from infra.eventstore.aggregate_cache import AggregateCache, clone


def trader() -> Trader:
    t = Trader(uuid4(), "PLATFORM-A", "P1", auto_rebalance=True)
    t.positions = {"BTC": Decimal("0.5")}
    return t


def test_a_clone_equals_its_original_and_shares_no_container() -> None:
    original = trader()
    twin = clone(original)

    assert twin == original
    assert twin.positions is not original.positions
    twin.positions["ETH"] = Decimal(1)
    twin.place_hold(uuid4(), uuid4(), OperationType.REBALANCE)
    assert "ETH" not in original.positions
    assert original.held_by is None
    assert len(original.collect_events()) == 1  # only its own Opened


def test_the_cache_hands_out_what_it_kept_and_forgets_the_least_recently_used() -> None:
    cache = AggregateCache(maxsize=2)
    a, b, c = trader(), trader(), trader()
    cache.keep([a, b])
    cache.versions([a.id])  # a is now the most recently used
    cache.keep([c])

    assert set(cache.versions([a.id, b.id, c.id])) == {a.id, c.id}
    assert len(cache) == 2


def test_an_older_version_never_replaces_a_newer_one() -> None:
    cache = AggregateCache()
    newer = trader()
    older = clone(newer)
    newer.place_hold(uuid4(), uuid4(), OperationType.REBALANCE)
    cache.keep([newer])
    cache.keep([older])

    assert cache.versions([newer.id])[newer.id].version == newer.version


def test_a_kept_aggregate_is_a_copy() -> None:
    cache = AggregateCache()
    original = trader()
    cache.keep([original])
    original.positions["BTC"] = Decimal(99)

    assert cache.versions([original.id])[original.id].positions == {"BTC": Decimal("0.5")}


def test_size_zero_keeps_nothing_and_a_negative_size_is_refused() -> None:
    cache = AggregateCache(maxsize=0)
    cache.keep([trader()])
    assert len(cache) == 0
    with pytest.raises(ValueError, match="negative"):
        AggregateCache(maxsize=-1)


def test_skipped_kinds_are_never_kept() -> None:
    cache = AggregateCache(skipped=(Trader,))
    cache.keep([trader()])
    assert len(cache) == 0
