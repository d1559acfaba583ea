"""PriceDiscovery: which quotes to ask for until every block fits its quote."""

from __future__ import annotations

from decimal import Decimal

from domain.pricing import BlockOrder, PriceDiscovery, QuoteRequest
from domain.statuses import Side

D = Decimal


def block(side: Side, quantity: str) -> BlockOrder:
    return BlockOrder("SOL", side, D(quantity))


def discovery() -> PriceDiscovery:
    return PriceDiscovery(["SOL"], {"SOL": 2})


def test_the_first_round_asks_each_side_and_size_with_headroom() -> None:
    found = discovery()
    assert found.first({"SOL": block(Side.BUY, "10")}) == [
        QuoteRequest("SOL", Side.BUY, D("10.50"))
    ]
    assert found.first({}) == [QuoteRequest("SOL", Side.BUY, D(0))]  # no block: a price only


def test_a_block_that_fits_its_quote_needs_nothing_more() -> None:
    found = discovery()
    found.quoted("SOL", Side.BUY, D("10.50"), D("150.10"))
    assert found.next({"SOL": block(Side.BUY, "10.4")}) == []
    assert found.next({}) == []  # the Traders' buys and sells cancel at this price
    assert found.crossed == {}


def test_a_block_that_outgrew_its_quote_is_asked_again_larger() -> None:
    found = discovery()
    found.quoted("SOL", Side.SELL, D("10.50"), D("149.90"))
    assert found.next({"SOL": block(Side.SELL, "11")}) == [
        QuoteRequest("SOL", Side.SELL, D("11.55"))
    ]


def test_a_side_that_flips_is_asked_on_the_other_side_and_fits_if_the_market_moved() -> None:
    """At the ask the net is a sell: ask the bid; there (the market having moved meanwhile)
    it is a sell too, which fits: nothing crossed."""
    found = discovery()
    found.quoted("SOL", Side.BUY, D("1.05"), D("150.10"))
    assert found.next({"SOL": block(Side.SELL, "2")}) == [QuoteRequest("SOL", Side.SELL, D("2.10"))]
    found.quoted("SOL", Side.SELL, D("2.10"), D("149.90"))
    assert found.next({"SOL": block(Side.SELL, "2")}) == []
    assert found.crossed == {}


def test_a_net_that_takes_the_other_side_at_each_sides_price_is_crossed_at_the_mid() -> None:
    found = discovery()
    found.quoted("SOL", Side.BUY, D("1.05"), D("150.10"))
    assert found.next({"SOL": block(Side.SELL, "2")}) == [QuoteRequest("SOL", Side.SELL, D("2.10"))]
    found.quoted("SOL", Side.SELL, D("2.10"), D("149.90"))
    assert found.next({"SOL": block(Side.BUY, "3")}) == [QuoteRequest("SOL", Side.BUY, D(0))]
    assert found.crossed == {"SOL": {"net_at_ask": "-2", "net_at_bid": "3"}}
    found.quoted("SOL", Side.BUY, D(0), D("150.00"))
    assert found.next({"SOL": block(Side.BUY, "0.5")}) == []  # crossed: no block, house nets
    assert found.prices() == {"SOL": D("150.00")}
