"""The pricing stage's rules, in domain.pricing: how many rounds of quotes an Operation gets,
when a quote is too old to lock, and how a venue's quote becomes the locked terms and back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.pricing import (
    LOCK_MARGIN,
    MAX_QUOTE_ROUNDS,
    BlockOrder,
    LockedQuote,
    PriceDiscovery,
    PricingFailedError,
    QuoteRequest,
    require_fresh,
)
from domain.statuses import Side

D = Decimal
NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


@dataclass(frozen=True)
class VenueQuote:
    quote_id: str
    side: Side
    price: Decimal
    quantity: Decimal
    quoted_at: datetime
    expires_at: datetime


def growing(found: PriceDiscovery, quantity: str) -> list[QuoteRequest]:
    """A round in which the SOL block outgrew its quote again."""
    found.quoted("SOL", Side.BUY, D("1.00"), D("150"))
    return found.requote({"SOL": BlockOrder("SOL", Side.BUY, D(quantity))})


def test_blocks_that_keep_moving_fail_the_pricing_after_the_last_round() -> None:
    found = PriceDiscovery(["SOL"], {"SOL": 2})
    for round_ in range(1, MAX_QUOTE_ROUNDS):
        assert growing(found, f"{round_ + 1}") == [
            QuoteRequest("SOL", Side.BUY, D(round_ + 1) * D("1.05"))
        ]
    with pytest.raises(PricingFailedError) as failed:
        growing(found, "99")
    assert str(failed.value) == (
        f"the blocks of SOL did not fit their quotes after {MAX_QUOTE_ROUNDS} rounds"
    )


def test_a_last_round_that_fits_locks() -> None:
    found = PriceDiscovery(["SOL"], {"SOL": 2})
    for round_ in range(1, MAX_QUOTE_ROUNDS):
        growing(found, f"{round_ + 1}")
    assert growing(found, "0.5") == []


def test_a_quote_expired_by_the_lock_fails_the_pricing() -> None:
    fresh = LockedQuote.of(
        "BTC", VenueQuote("q1", Side.BUY, D(1), D(1), NOW, NOW + timedelta(seconds=1))
    )
    late = LockedQuote.of("ETH", VenueQuote("q2", Side.SELL, D(1), D(1), NOW, NOW))
    require_fresh({"BTC": fresh}, NOW)
    with pytest.raises(PricingFailedError, match=r"^quote for ETH expired before it was locked$"):
        require_fresh({"BTC": fresh, "ETH": late}, NOW)


def test_quotes_that_would_expire_before_the_lock_are_asked_for_again_on_their_terms() -> None:
    found = PriceDiscovery(["BTC", "ETH"], {"BTC": 8, "ETH": 8})
    found.quoted("BTC", Side.BUY, D("1.05"), D("60000"))
    found.quoted("ETH", Side.SELL, D("2.1"), D("3000"))
    fitting = {
        "BTC": BlockOrder("BTC", Side.BUY, D("1")),
        "ETH": BlockOrder("ETH", Side.SELL, D("2")),
    }
    assert found.requote(fitting) == []
    expiries = {"BTC": NOW + LOCK_MARGIN + timedelta(seconds=1), "ETH": NOW + LOCK_MARGIN}
    assert found.expiring(expiries, NOW) == [QuoteRequest("ETH", Side.SELL, D("2.1"))]
    assert found.expiring({**expiries, "ETH": NOW + timedelta(seconds=9)}, NOW) == []


def test_quotes_that_keep_expiring_fail_the_pricing_after_the_last_round() -> None:
    found = PriceDiscovery(["SOL"], {"SOL": 2})
    found.quoted("SOL", Side.BUY, D("1.00"), D("150"))
    expired = {"SOL": NOW}
    for _ in range(1, MAX_QUOTE_ROUNDS):
        assert found.expiring(expired, NOW) == [QuoteRequest("SOL", Side.BUY, D("1.00"))]
    with pytest.raises(PricingFailedError, match="expired while the blocks were sized"):
        found.expiring(expired, NOW)


def test_a_venue_quote_is_locked_as_the_event_stores_it_and_read_back_the_same() -> None:
    venue = VenueQuote(
        "q-1", Side.SELL, D("67012.50"), D("0.0149"), NOW, NOW + timedelta(seconds=10)
    )
    locked = LockedQuote.of("BTC", venue)
    assert locked.as_dict() == {
        "price": "67012.50",
        "quote_id": "q-1",
        "quoted_at": "2026-11-26T12:00:00+00:00",
        "side": "sell",
        "quantity": "0.0149",
        "expires_at": "2026-11-26T12:00:10+00:00",
    }
    back = LockedQuote.from_dict("BTC", locked.as_dict())
    assert back == locked
    assert (back.quote_side, back.quote_quantity, back.quoted_time, back.expiry) == (
        Side.SELL,
        D("0.0149"),
        NOW,
        NOW + timedelta(seconds=10),
    )
    assert back.covers(BlockOrder("BTC", Side.SELL, D("0.0149")))
    assert not back.covers(BlockOrder("BTC", Side.SELL, D("0.0150")))
    assert not back.covers(BlockOrder("BTC", Side.BUY, D("0.0001")))
