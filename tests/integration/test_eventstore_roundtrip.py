"""eventsourcing stores aggregates in PostgreSQL through `eventsourcing_env(url)`."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg
import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from infra.eventstore.persistence import eventsourcing_env

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


class Basket(Aggregate):
    @event("Created")
    def __init__(self, name: str) -> None:
        self.name = name
        self.items: dict[str, Decimal] = {}

    @event("ItemAdded")
    def add_item(self, symbol: str, quantity: Decimal) -> None:
        self.items[symbol] = self.items.get(symbol, Decimal(0)) + quantity


class Baskets(Application[UUID]):
    def create_basket(self, name: str) -> UUID:
        basket = Basket(name)
        self.save(basket)
        return basket.id

    def add_item(self, basket_id: UUID, symbol: str, quantity: Decimal) -> None:
        basket: Basket = self.repository.get(basket_id)
        basket.add_item(symbol, quantity)
        self.save(basket)

    def get_basket(self, basket_id: UUID) -> Basket:
        basket: Basket = self.repository.get(basket_id)
        return basket


@pytest.fixture
def baskets_factory() -> Iterator[list[Baskets]]:
    """Collects the applications a test opens, closing their connection pools afterwards."""
    opened: list[Baskets] = []
    yield opened
    for app in opened:
        app.close()


def open_baskets(url: str, opened: list[Baskets]) -> Baskets:
    app = Baskets(env=eventsourcing_env(url))
    opened.append(app)
    return app


async def test_aggregate_is_saved_and_reloaded_from_postgres(
    fresh_database_url: str, baskets_factory: list[Baskets]
) -> None:
    writer = open_baskets(fresh_database_url, baskets_factory)
    basket_id = writer.create_basket("growth")
    writer.add_item(basket_id, "BTC", Decimal("0.00012345"))

    reader = open_baskets(fresh_database_url, baskets_factory)  # nothing cached in memory
    basket = reader.get_basket(basket_id)

    assert basket.name == "growth"
    assert basket.items == {"BTC": Decimal("0.00012345")}
    assert basket.version == 2

    conn = await asyncpg.connect(fresh_database_url)
    try:
        rows = await conn.fetch(
            "SELECT originator_id, originator_version, topic, state FROM baskets_events"
            " ORDER BY originator_version"
        )
    finally:
        await conn.close()
    assert [row["originator_id"] for row in rows] == [basket_id, basket_id]
    assert [row["originator_version"] for row in rows] == [1, 2]
    assert rows[0]["topic"].endswith("Basket.Created")
    assert rows[1]["topic"].endswith("Basket.ItemAdded")
    assert b"0.00012345" in rows[1]["state"]  # Decimal kept exact, as a string


async def test_schema_from_the_url_options_is_used(
    fresh_database_url: str, baskets_factory: list[Baskets]
) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    await conn.execute("CREATE SCHEMA ledger")
    await conn.close()
    url = f"{fresh_database_url}?options=-csearch_path%3Dledger"

    app = open_baskets(url, baskets_factory)
    basket_id = app.create_basket("income")

    conn = await asyncpg.connect(url)  # asyncpg honours the same URL option
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM ledger.baskets_events WHERE originator_id = $1", basket_id
        )
        search_path = await conn.fetchval("SHOW search_path")
    finally:
        await conn.close()
    assert count == 1
    assert search_path == "ledger"
