"""The store's aggregate cache on a real PostgreSQL: hot aggregates are not rebuilt, and the
cache never shows a state the store does not hold."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.persistence import IntegrityError

from domain import ids
from domain.statuses import OperationType
from domain.trader import Trader
from infra.eventstore.store import PostgresTrading
from tests.integration.test_store import CODES, enrollment, prepared
from tests.unit.domain.flows import new_strategy, request, run

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


class CountingTrading(PostgresTrading):
    """Counts the stored events it decodes (the cost the cache exists to avoid)."""

    name = "Trading"
    decoded = 0

    def construct_mapper(self) -> Any:
        mapper = super().construct_mapper()
        decode = mapper.to_domain_event

        def counted(stored: Any) -> Any:
            self.decoded += 1
            return decode(stored)

        mapper.to_domain_event = counted  # type: ignore[method-assign]
        return mapper


@pytest.fixture
def app(fresh_database_url: str) -> Iterator[CountingTrading]:
    with CountingTrading(fresh_database_url, chunk_size=3) as trading:
        yield prepared(trading)  # type: ignore[misc]


def trader_ids(app: PostgresTrading, strategy_id: Any) -> list[Any]:
    return [ids.trader_id(strategy_id, c) for c in CODES]


def test_traders_saved_by_one_stage_load_in_the_next_without_decoding_anything(
    app: CountingTrading,
) -> None:
    strategy = new_strategy(app)
    run(app, strategy, OperationType.ENROLLMENT, enrollment(CODES))
    app.decoded = 0

    loaded = app.get_many(trader_ids(app, strategy.id))

    assert len(loaded) == len(CODES)
    assert app.decoded == 0
    assert loaded == {i: app.repository.get(i) for i in loaded}


def test_a_write_from_another_process_is_folded_into_the_cached_copy(
    app: CountingTrading, fresh_database_url: str
) -> None:
    strategy = new_strategy(app)
    run(app, strategy, OperationType.ENROLLMENT, enrollment(CODES))
    wanted = trader_ids(app, strategy.id)
    app.get_many(wanted)

    with PostgresTrading(fresh_database_url) as other:
        run(
            other,
            other.strategy(strategy.platform_id, strategy.id),
            OperationType.TOP_UP,
            enrollment(CODES),
        )
    app.decoded = 0
    after = app.get_many(wanted)
    decoded = app.decoded

    assert after == {i: app.repository.get(i) for i in wanted}
    assert all(t.cash + sum(t.positions.values(), Decimal(0)) > 0 for t in after.values())
    assert 0 < decoded <= 2 * len(CODES)  # only the newer events: hold and settlement


def test_changing_a_loaded_aggregate_without_saving_it_changes_no_later_load(
    app: CountingTrading,
) -> None:
    strategy = new_strategy(app)
    run(app, strategy, OperationType.ENROLLMENT, enrollment(CODES))
    trader_id = trader_ids(app, strategy.id)[0]
    first = app.get_many([trader_id])[trader_id]
    assert isinstance(first, Trader)
    kept = (dict(first.positions), first.cash, first.version)

    first.positions["BTC"] = Decimal("1000000")
    first.cash = Decimal("-1")
    first.change_auto_rebalance(not first.auto_rebalance)  # a pending event, never saved

    again = app.get_many([trader_id])[trader_id]
    assert (again.positions, again.cash, again.version) == kept
    assert again is not first


def test_a_save_built_on_a_cached_copy_that_went_stale_still_conflicts(
    app: CountingTrading, fresh_database_url: str
) -> None:
    strategy = new_strategy(app)
    run(app, strategy, OperationType.ENROLLMENT, enrollment(CODES))
    trader_id = trader_ids(app, strategy.id)[0]
    stale = app.get_many([trader_id])[trader_id]

    with PostgresTrading(fresh_database_url) as other:
        fresh = other.get_many([trader_id])[trader_id]
        fresh.change_auto_rebalance(not fresh.auto_rebalance)
        other.save(fresh)

    stale.change_auto_rebalance(not stale.auto_rebalance)
    with pytest.raises(IntegrityError):
        app.save(stale)
    assert app.get_many([trader_id])[trader_id].auto_rebalance == fresh.auto_rebalance


def test_a_cache_of_size_zero_keeps_nothing_and_loads_the_same(fresh_database_url: str) -> None:
    with PostgresTrading(fresh_database_url, chunk_size=3, cache_size=0) as plain:
        prepared(plain)
        strategy = new_strategy(plain)
        operation = request(plain, strategy, OperationType.ENROLLMENT, enrollment(CODES))
        assert plain.operation(operation.id) == plain.repository.get(operation.id)
        assert len(plain._cache) == 0
