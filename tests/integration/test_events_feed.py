"""`GET /strategies/events` when other platforms' events fill more than one scan window: a
page is empty only when the caller is caught up, and each request's work stays bounded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from api.routes import events
from infra.eventstore.store import PostgresTrading
from tests.integration.event_feed import feed_client

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    import httpx

pytestmark = pytest.mark.integration

QUIET, BUSY = "quiet-platform", "busy-platform"
WINDOW = 10
BUSY_STRATEGIES = 35  # more than three windows of the busy platform's events


@pytest.fixture
def trading(fresh_database_url: str) -> Iterator[PostgresTrading]:
    """The busy platform writes first, the quiet one last: the quiet one's first events lie
    behind several windows of someone else's."""
    app = PostgresTrading(fresh_database_url)
    try:
        for _ in range(BUSY_STRATEGIES):
            app.create_strategy(BUSY, uuid4(), {"quoted_currency": "USD"})
        for _ in range(3):
            app.create_strategy(QUIET, uuid4(), {"quoted_currency": "USD"})
        yield app
    finally:
        app.close()


@pytest.fixture
async def feed(
    trading: PostgresTrading, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr(events, "SCAN_LIMIT", WINDOW)
    async with feed_client(trading) as client:
        yield client


async def page(
    feed: httpx.AsyncClient, platform: str, after: str = "", limit: int = 100
) -> dict[str, Any]:
    response = await feed.get(
        "/strategies/events",
        params={"after": after, "limit": limit},
        headers={"x-test-platform": platform},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_first_page_holds_the_callers_events_behind_other_platforms_windows(
    feed: httpx.AsyncClient,
) -> None:
    first = await page(feed, QUIET)
    assert len(first["events"]) == 3
    assert {e["data"]["platform_id"] for e in first["events"]} == {QUIET}
    assert first["caught_up"] is True
    after = await page(feed, QUIET, first["next"])
    assert (after["events"], after["caught_up"], after["next"]) == ([], True, first["next"])


async def test_a_full_page_before_the_end_is_not_caught_up(feed: httpx.AsyncClient) -> None:
    first = await page(feed, QUIET, limit=2)
    assert (len(first["events"]), first["caught_up"]) == (2, False)
    rest = await page(feed, QUIET, first["next"], limit=2)
    assert (len(rest["events"]), rest["caught_up"]) == (1, True)


async def test_a_platform_with_no_events_gets_an_empty_caught_up_page(
    feed: httpx.AsyncClient,
) -> None:
    nothing = await page(feed, "nobody")
    assert (nothing["events"], nothing["caught_up"]) == ([], True)


async def test_past_the_scan_budget_an_empty_page_says_it_is_not_caught_up(
    feed: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "SCAN_WINDOWS", 2)  # 20 notifications per request at most
    seen: list[dict[str, Any]] = []
    cursor, requests = "", 0
    while True:
        answer = await page(feed, QUIET, cursor)
        requests += 1
        assert answer["events"] or not answer["caught_up"] or answer["next"] == cursor
        seen += answer["events"]
        if answer["caught_up"]:
            break
        assert answer["next"] != cursor  # every page moves forward
        cursor = answer["next"]
    assert len(seen) == 3
    assert requests >= 2  # the budget did cut the scan short at least once
