"""The latest indicative prices as a read model: fed by an Operation's indicative and locked
prices and by a policy run's, the latest event winning whatever order the streams arrive
in, and a replay changing nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from projections.prices import PRICES, PriceRow, price_id
from projections.writer import Projection
from tests.unit.domain.flows import PLATFORM, new_app
from tests.unit.domain.test_policy_runs import MOVED, enrolled, run_policy, tomorrow_noon
from tests.unit.projections.history import Story, messages, story
from tests.unit.projections.test_read_models import _interleave, fold, rows_of

if TYPE_CHECKING:
    from infra.bus.messages import DomainEventMessage


@pytest.fixture(scope="module")
def told() -> Story:
    return story()


@pytest.fixture(scope="module")
def history(told: Story) -> list[DomainEventMessage]:
    return messages(told.app)


def prices_of(projection: Projection) -> dict[str, PriceRow]:
    return {row.asset: row for row in rows_of(projection, PRICES.name).values()}


def _price(value: object) -> Decimal:
    return Decimal(value["price"] if isinstance(value, dict) else str(value))


def test_each_asset_keeps_the_price_of_the_latest_event_that_priced_it(
    history: list[DomainEventMessage],
) -> None:
    """The story ends with failed Operations: their indicative prices, recorded after the
    last lock, are the latest."""
    kinds = ("Operation.PricesLocked", "Operation.IndicativePricesRecorded")
    priced = [e for e in history if e.type in kinds]
    kept = prices_of(fold(history))
    assert kept
    for asset, row in kept.items():
        last = max(
            (e for e in priced if asset in e.data["prices"]),
            key=lambda e: (e.timestamp, e.aggregate_id, e.aggregate_version),
        )
        assert row.id == price_id(PLATFORM, "USD", asset)
        assert (row.platform_id, row.quoted_currency) == (PLATFORM, "USD")
        assert row.price == _price(last.data["prices"][asset])
        assert (row.priced_at, row.source_id, row.event_type) == (
            last.timestamp,
            last.aggregate_id,
            last.type,
        )
    assert {r.event_type for r in kept.values()} <= set(kinds)


def test_indicative_prices_are_kept_until_a_later_event_prices_the_asset(
    history: list[DomainEventMessage],
) -> None:
    first = next(e for e in history if e.type == "Operation.IndicativePricesRecorded")
    upto = history[: history.index(first) + 1]
    kept = prices_of(fold(upto))
    assert {a: r.price for a, r in kept.items()} == {
        a: Decimal(p) for a, p in first.data["prices"].items()
    }
    assert {r.event_type for r in kept.values()} == {"Operation.IndicativePricesRecorded"}


@pytest.mark.parametrize("seed", range(8))
def test_prices_do_not_depend_on_the_order_streams_arrive_in(
    history: list[DomainEventMessage], seed: int
) -> None:
    assert prices_of(fold(_interleave(history, seed))) == prices_of(fold(history))


def test_streams_in_reverse_order_keep_the_latest_price_and_a_replay_changes_nothing(
    history: list[DomainEventMessage],
) -> None:
    """Whole Operations arriving newest first (a lagging partition): the older prices that
    come later are ignored."""
    operations = [e.aggregate_id for e in history if e.type == "Operation.Requested"]
    others = [e for e in history if e.aggregate_id not in operations]
    backwards = others + [e for op in reversed(operations) for e in history if e.aggregate_id == op]
    projection = fold(backwards)
    assert prices_of(projection) == prices_of(fold(history))
    for event in history:
        changed = projection.apply(event)
        assert not [row for row in changed if isinstance(row, PriceRow)], event.type


def test_a_policy_run_records_the_prices_it_valued_traders_at() -> None:
    app = new_app()
    strategy = enrolled(app)
    run_policy(app, strategy, tomorrow_noon())
    history = messages(app)
    assert any(e.type == "Strategy.PolicyRunRecorded" for e in history)
    kept = prices_of(fold(history))
    assert {a: r.price for a, r in kept.items()} == MOVED
    assert {r.event_type for r in kept.values()} == {"Strategy.PolicyRunRecorded"}
