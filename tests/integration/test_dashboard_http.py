"""The pages `serve` renders, over HTTP on a real engine: the operator dashboard behind its
login (session cookie, CSRF on every form that changes something), the offline Swagger UI and
the AsyncAPI page. The browser's view of the same is tests/e2e/test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from api import dashboard_session
from api.main import build_app
from infra.bus.asyncapi import asyncapi_document
from infra.settings import Settings
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import ADMIN_TOKEN, World, http_world
from tests.integration.pipeline.harness import BLUE_CHIP

pytestmark = pytest.mark.integration

PLATFORM = "DASH1"
CODES = ["D1", "D2", "D3", "D4", "D5"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
async def world(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    with scratch_database(postgres_url, "dashboard") as url:
        async with http_world(url, tmp_path_factory.mktemp("dash"), PLATFORM, CODES) as built:
            yield built


def client_of(world: World) -> httpx.AsyncClient:
    """A client of the same app with a cookie jar of its own."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.app), base_url="http://api.test"
    )


async def logged_in(world: World) -> tuple[httpx.AsyncClient, str]:
    """A client of the same app holding a session, and the session's CSRF token."""
    http = client_of(world)
    answer = await http.post("/dashboard/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 303, answer.text
    page = await http.get("/dashboard")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found, page.text
    return http, found.group(1)


async def test_the_dashboard_asks_for_the_admin_token_before_showing_anything(
    world: World,
) -> None:
    first = await world.http.get("/dashboard")
    assert first.status_code == 200
    assert 'action="/dashboard/login"' in first.text and "Recent Operations" not in first.text
    assert (await world.http.get("/dashboard/live")).status_code == 401
    wrong = await world.http.post("/dashboard/login", data={"token": "nope"})
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    assert dashboard_session.COOKIE not in wrong.headers.get("set-cookie", "")
    # a bearer header is not a session: the pages are for a browser's cookie only
    assert "Recent Operations" not in (await world.http.get("/dashboard", headers=world.admin)).text


async def test_the_session_cookie_is_http_only_strict_and_secure_over_https(world: World) -> None:
    answer = await world.http.post("/dashboard/login", data={"token": ADMIN_TOKEN})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    cookie = answer.headers["set-cookie"]
    assert ADMIN_TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/dashboard" in cookie and "Secure" not in cookie
    secure = await world.http.post("https://api.test/dashboard/login", data={"token": ADMIN_TOKEN})
    assert "Secure" in secure.headers["set-cookie"]


async def test_a_forged_or_expired_session_is_refused(world: World) -> None:
    now = time.time()
    issued = dashboard_session.issue(ADMIN_TOKEN, now)
    assert dashboard_session.valid(ADMIN_TOKEN, issued, now)
    assert not dashboard_session.valid(ADMIN_TOKEN, issued, now + dashboard_session.LIFETIME_S)
    assert not dashboard_session.valid("another token", issued, now)
    version, expiry, nonce, signature = issued.split(".")
    longer = f"{version}.{int(expiry) + 10**6}.{nonce}.{signature}"
    for cookie in (longer, "v1.9999999999.x.y", "", "garbage"):
        assert not dashboard_session.valid(ADMIN_TOKEN, cookie, now)
        http = client_of(world)
        http.cookies.set(dashboard_session.COOKIE, cookie)
        assert (await http.get("/dashboard/live")).status_code == 401


async def test_forms_that_change_something_need_the_sessions_csrf_token(world: World) -> None:
    http, csrf = await logged_in(world)
    fields = {
        "platform_id": PLATFORM,
        "subscription_id": str(uuid4()),
        "delivery_id": str(uuid4()),
    }
    for sent in ({**fields}, {**fields, "csrf": "0" * 64}):
        refused = await http.post("/dashboard/redeliver", data=sent)
        assert refused.status_code == 403, refused.text
    unknown = await http.post("/dashboard/redeliver", data={**fields, "csrf": csrf})
    assert unknown.status_code == 409  # no such dead letter: nothing changed
    bad = await http.post("/dashboard/redeliver", data={**fields, "csrf": csrf, "delivery_id": "x"})
    assert bad.status_code == 400
    odd = {**fields, "csrf": csrf, "platform_id": "A B\u0000"}
    assert (await http.post("/dashboard/redeliver", data=odd)).status_code == 400
    # JSON is not a form: no field, so no CSRF token either
    assert (
        await http.post("/dashboard/redeliver", json={**fields, "csrf": csrf})
    ).status_code == 403
    logout = await http.post("/dashboard/logout", data={"csrf": csrf})
    assert logout.status_code == 303 and "Max-Age=0" in logout.headers["set-cookie"]


async def test_the_dashboard_shows_an_operations_chunks_prices_and_the_gauges(
    world: World,
) -> None:
    strategy = await world.strategy()
    people = [{"participant_code": c, "amount": "100.00"} for c in CODES]
    operation = await world.request(
        strategy, "enroll", {"allocations": BLUE_CHIP, "participants": people}
    )
    assert (await world.finished(operation))["status"] == "settled"
    await world.caught_up()
    http, _ = await logged_in(world)
    await asyncio.sleep(1.1)  # past the shared snapshot's second
    live = await http.get("/dashboard/live")
    assert live.status_code == 200
    assert live.headers["content-security-policy"].startswith("default-src 'self'")
    assert live.headers["cache-control"] == "no-store"
    row = re.search(rf'<tr data-operation="{operation["id"]}".*?</tr>', live.text, re.S)
    assert row, live.text
    chunks = len(CODES) // 2 + 1  # chunk_size 2
    for stage in ("check", "settlement"):
        assert f'data-stage="{stage}" value="{chunks}" max="{chunks}"' in row.group(0)
    assert "BTC" in row.group(0) and "settled" in row.group(0)
    for section in ("webhooks", "float", "lags"):
        assert f'<section id="{section}">' in live.text
    assert "None reported." in live.text or "DASH1" in live.text  # float: filled or not yet


async def test_docs_load_nothing_from_another_host(world: World) -> None:
    docs = await world.http.get("/docs")
    assert docs.status_code == 200
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+", docs.text, re.I), docs.text
    assert "/static/swagger-ui/swagger-ui-bundle.js" in docs.text
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', docs.text):
        assert (await world.http.get(asset)).status_code == 200, asset
    assert (await world.http.get("/redoc")).status_code == 404
    assert "connect-src" not in docs.headers["content-security-policy"]  # default-src 'self'


async def test_the_asyncapi_page_lists_every_topic_with_its_payload_fields(world: World) -> None:
    page = await world.http.get("/asyncapi")
    assert page.status_code == 200
    prefix = world.app.state.settings.topic_prefix
    document = asyncapi_document(prefix, world.app.version)
    for channel in document["channels"].values():
        assert f"<code>{channel['address']}</code>" in page.text
    assert "consumes" in page.text and "publishes" in page.text
    assert "strategy_id" in page.text and "string (uuid)" in page.text
    assert "http://" not in page.text and "https://" not in page.text


async def test_without_an_admin_token_the_dashboard_is_off(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql://nowhere/x",
        master_key=base64.b64encode(bytes(32)).decode(),
        admin_token=None,
    )
    app = build_app(settings, "postgresql://nowhere/x")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        assert (await http.get("/dashboard")).status_code == 403
        assert (await http.post("/dashboard/login", data={"token": ""})).status_code == 403
