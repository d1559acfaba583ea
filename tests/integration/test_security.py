"""The security promises, proven on the real app, engine and PostgreSQL (spec §7.2, §11.3).

One world per module: the real `create_app` with the whole pipeline in-process (embedded mode:
no Kafka, an in-process bus), two platforms A and B that each hold a Strategy, Traders, an
Operation, its Executions and a webhook subscription, plus a disabled platform and a rotated
key. Every log line of the module is captured (JSON, DEBUG), and every request and response
goes through one httpx client that records them, so that the last test can look for secrets
in everything that was logged or answered.

- Authentication: every route the OpenAPI document lists as signed refuses every kind of bad
  or missing credential with a 401 problem (403 for a disabled platform, as the spec's §11.3
  says), never a 2xx, never a 5xx; admin routes refuse anything but the admin token.
- Isolation: platform A cannot read, list, filter by, page into, modify or act on B's
  resources, and its answer for B's id is the answer for an id that does not exist.
- Secrets never appear in logs or error bodies.
- Limits: a body over STRATEGIES_MAX_BODY_BYTES is a 413, more than 10,000 participants a
  400; neither writes anything.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from api.auth import CallerFirstRoute, sign
from infra.bootstrap.engine import Engine
from infra.bootstrap.http import create_app
from infra.logging import configure_logging
from infra.postgres.platforms import Credentials, create_platform, disable_platform, rotate_key
from infra.settings import LogFormat, Settings
from tests.e2e.client import SignedClient, fresh_signature
from tests.fixtures.postgres import scratch_database

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "admin-" + secrets.token_urlsafe(24)
MASTER_KEY = base64.b64encode(secrets.token_bytes(32)).decode()
MAX_BODY_BYTES = 1024 * 1024  # a 10,001-participant enroll (~0.6 MB) still fits under it
A, B, DISABLED, ROTATED = "SECA", "SECB", "SECOFF", "SECROT"
A_CODES, B_CODES = ["P1", "P2"], ["P1", "P2", "P3"]  # the same codes: filters must not mix
ALLOCATIONS = [
    {"underlying_currency": "BTC", "weight": "0.60"},
    {"underlying_currency": "ETH", "weight": "0.40"},
]
PAYLOAD_TYPES = [
    "trade_strategy.operation.status_changed",
    "trade_strategy.execution.status_changed",
    "trade_strategy.trader.created",
]
HOOK_URL = "http://127.0.0.1:9/hooks"  # nothing listens there: deliveries are logged, then fail
PROBLEM = "application/problem+json"
SETTLE_TIMEOUT_S = 120


# -- the world -----------------------------------------------------------------------------
@dataclass
class Traffic:
    """Every request header value and response body the module's client saw."""

    header_values: set[str] = field(default_factory=set)
    responses: list[tuple[str, int, str]] = field(default_factory=list)  # (request, status, body)

    async def on_request(self, request: httpx.Request) -> None:
        for name in ("x-scx-signed", "x-scx-passphrase", "authorization"):
            value = request.headers.get(name)
            if value:
                self.header_values.add(value)

    async def on_response(self, response: httpx.Response) -> None:
        await response.aread()
        request = f"{response.request.method} {response.request.url.raw_path.decode()}"
        self.responses.append((request, response.status_code, response.text))


@dataclass
class Side:
    """One platform and what it owns."""

    credentials: Credentials
    client: SignedClient
    subscription: dict[str, Any]
    strategy: dict[str, Any] = field(default_factory=dict)
    operation: dict[str, Any] = field(default_factory=dict)
    traders: list[dict[str, Any]] = field(default_factory=list)
    executions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def platform_id(self) -> str:
        return self.credentials.platform_id

    @property
    def ids(self) -> set[str]:
        owned = [self.strategy, self.operation, *self.traders, *self.executions]
        return {item["id"] for item in owned}


@dataclass
class World:
    app: FastAPI
    engine: Engine
    http: httpx.AsyncClient
    traffic: Traffic
    logs: io.StringIO
    a: Side
    b: Side
    disabled: Credentials
    rotated_away: Credentials
    webhook_secrets: list[str] = field(default_factory=list)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @property
    def every_credentials(self) -> list[Credentials]:
        return [self.a.credentials, self.b.credentials, self.disabled, self.rotated_away]

    async def notification_position(self) -> int:
        newest = await asyncio.to_thread(self.engine.trading.recorder.max_notification_id)
        return int(newest or 0)


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> Iterator[str]:
    """A database of this module's own (`fresh_database_url` is per test; the world is not)."""
    with scratch_database(postgres_url, "security") as url:
        yield url


@pytest.fixture(scope="module")
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the module, from before the app starts, as the JSON renderer writes
    them; the previous handlers come back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    settings = Settings(log_format=LogFormat.JSON, log_level="DEBUG")
    configure_logging(settings, stream=buffer, force=True)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.fixture(scope="module")
async def world(
    database_url: str, captured_logs: io.StringIO, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("security"),
        database_url=database_url,
        kafka_bootstrap_servers=None,
        master_key=MASTER_KEY,
        admin_token=ADMIN_TOKEN,
        max_body_bytes=MAX_BODY_BYTES,
        chunk_size=2,
        webhook_allow_private=True,  # HOOK_URL is on loopback
    )
    app = create_app(settings, database_url, roles=["all"])  # embedded: the whole pipeline
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        assert engine is not None, "the engine did not start: " + captured_logs.getvalue()[-3000:]
        traffic = Traffic()
        transport = httpx.ASGITransport(app=app)
        hooks: dict[str, list[Callable[[Any], Awaitable[None]]]] = {
            "request": [traffic.on_request],
            "response": [traffic.on_response],
        }
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", event_hooks=hooks, timeout=60
        ) as http:
            built = await _build_world(app, engine, http, traffic, captured_logs)
            yield built


async def _build_world(
    app: FastAPI, engine: Engine, http: httpx.AsyncClient, traffic: Traffic, logs: io.StringIO
) -> World:
    box = app.state.secret_box
    pool = engine.pool
    disabled = await create_platform(pool, DISABLED, "Switched off", box)
    await disable_platform(pool, DISABLED)
    rotated_away = await create_platform(pool, ROTATED, "Rotated", box)
    await rotate_key(pool, ROTATED, box)
    a = await _platform(http, pool, box, A, A_CODES)
    b = await _platform(http, pool, box, B, B_CODES)
    world = World(app, engine, http, traffic, logs, a, b, disabled, rotated_away)
    world.webhook_secrets += [a.subscription["secret"], b.subscription["secret"]]
    for side, codes in ((a, A_CODES), (b, B_CODES)):
        await _trade(side, codes)
    for side, codes in ((a, A_CODES), (b, B_CODES)):
        await _settled_and_projected(side, len(codes))
    return world


async def _platform(
    http: httpx.AsyncClient, pool: asyncpg.Pool, box: Any, platform_id: str, codes: list[str]
) -> Side:
    credentials = await create_platform(pool, platform_id, f"Platform {platform_id}", box)
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    base = f"/admin/platforms/{platform_id}"
    participants = {"participants": [{"participant_code": code} for code in codes]}
    deposit = {"currency": "USD", "amount": "100000.00", "reference": f"{platform_id}-FLOAT"}
    hook = {"url": HOOK_URL, "payload_types": PAYLOAD_TYPES}
    assert (await http.put(f"{base}/participants", json=participants, headers=admin)).is_success
    assert (await http.post(f"{base}/float-deposits", json=deposit, headers=admin)).is_success
    subscribed = await http.post(f"{base}/webhooks", json=hook, headers=admin)
    assert subscribed.status_code == 201, subscribed.text
    return Side(credentials, SignedClient(http, credentials), subscribed.json())


async def _trade(side: Side, codes: list[str]) -> None:
    created = await side.client.post("/strategies", {"quoted_currency": "USD"})
    assert created.status_code == 201, created.text
    side.strategy = created.json()
    enroll = {
        "allocations": ALLOCATIONS,
        "participants": [
            {"participant_code": code, "amount": "100.00", "auto_rebalance": True} for code in codes
        ],
    }
    requested = await side.client.post(f"/strategies/{side.strategy['id']}/enroll", enroll)
    assert requested.status_code == 202, requested.text
    side.operation = requested.json()


async def _settled_and_projected(side: Side, participants: int) -> None:
    """Until the read models (lists read nothing else) show the settled Operation, its
    Executions and Traders; the webhook notifications are recorded in the same transactions."""
    strategy = side.strategy["id"]
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        operations = await _items(side.client, f"/strategies/operations?strategy_id={strategy}")
        executions = await _items(side.client, f"/strategies/executions?strategy_id={strategy}")
        traders = await _items(side.client, f"/strategies/traders?strategy_id={strategy}")
        settled = [o for o in operations if o["status"] == "settled"]
        done = [e for e in executions if e["status"] == "settled"]
        if settled and len(done) == participants and len(traders) == participants:
            side.operation, side.executions, side.traders = settled[0], executions, traders
            return
        assert time.monotonic() < deadline, (operations, executions, traders)
        await asyncio.sleep(0.2)


async def _items(client: SignedClient, path: str) -> list[dict[str, Any]]:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["message"]
    return items


# -- requests built by hand ------------------------------------------------------------------
def signed_headers(
    credentials: Credentials,
    method: str,
    path: str,
    body: bytes | None,
    *,
    timestamp: int | None = None,
    secret: str | None = None,
) -> dict[str, str]:
    if timestamp is None and secret is None:
        stamp, signature = fresh_signature(credentials.secret_b64, method, path, body)
    else:
        stamp = int(time.time()) if timestamp is None else timestamp
        signature = sign(secret or credentials.secret_b64, stamp, method, path, body)
    return {
        "X-SCX-API-KEY": credentials.api_key,
        "X-SCX-SIGNED": signature,
        "X-SCX-TIMESTAMP": str(stamp),
        "X-SCX-PASSPHRASE": credentials.passphrase,
        "X-REQUEST-ID": str(uuid.uuid4()),
        "Content-Type": "application/json",
    }


@dataclass(frozen=True)
class Route:
    method: str
    template: str

    def path(self, platform_id: str) -> str:
        """The template with every id filled in: a random UUID, or the platform's code."""
        filled = self.template.replace("{platform_id}", platform_id)
        while "{" in filled:
            start, end = filled.index("{"), filled.index("}")
            filled = filled[:start] + str(uuid.uuid4()) + filled[end + 1 :]
        return filled

    @property
    def body(self) -> bytes | None:
        return b'{"quoted_currency": "USD"}' if self.method in ("POST", "PUT", "PATCH") else None


def documented_routes(app: FastAPI) -> list[tuple[Route, dict[str, Any]]]:
    return [
        (Route(method.upper(), path), operation)
        for path, item in app.openapi()["paths"].items()
        for method, operation in item.items()
    ]


def is_signed(operation: dict[str, Any]) -> bool:
    return any(
        parameter["in"] == "header" and parameter["name"] == "X-SCX-API-KEY"
        for parameter in operation.get("parameters", [])
    )


def signed_routes(app: FastAPI) -> list[Route]:
    return [route for route, operation in documented_routes(app) if is_signed(operation)]


def is_admin(route: Route) -> bool:
    """The admin API, and the process's metrics (which name platforms' activity)."""
    return route.template.startswith("/admin/") or route.template == "/metrics"


def admin_routes(app: FastAPI) -> list[Route]:
    return [route for route, _ in documented_routes(app) if is_admin(route)]


# -- authentication ----------------------------------------------------------------------------
#: (path sent, headers, body sent) for a route, from the world, the route's path and body.
Attempt = tuple[str, dict[str, str | bytes], bytes | None]


@dataclass(frozen=True)
class Forgery:
    name: str
    codes: frozenset[str]
    attempt: Callable[[World, Route, str], Attempt]
    status: int = 401


def _good(world: World, route: Route, path: str, **changes: Any) -> dict[str, str | bytes]:
    return dict(signed_headers(world.a.credentials, route.method, path, route.body, **changes))


def _without(header: str) -> Callable[[World, Route, str], Attempt]:
    def attempt(world: World, route: Route, path: str) -> Attempt:
        headers = _good(world, route, path)
        del headers[header]
        return path, headers, route.body

    return attempt


def _replacing(**values: str | bytes) -> Callable[[World, Route, str], Attempt]:
    """A correctly signed request with some header values replaced."""
    names = {key.replace("_", "-").upper(): value for key, value in values.items()}

    def attempt(world: World, route: Route, path: str) -> Attempt:
        return path, {**_good(world, route, path), **names}, route.body

    return attempt


_SAME = b"same body"


def _signed_for(
    *, other_method: bool = False, path: str | None = None, body: bytes | None = _SAME
) -> Callable[[World, Route, str], Attempt]:
    """Signed by A's key, but for another method, path or body than the one sent."""

    def attempt(world: World, route: Route, sent_path: str) -> Attempt:
        method = route.method
        if other_method:
            method = "POST" if route.method == "GET" else "GET"
        signed_body = route.body if body is _SAME else body
        headers = signed_headers(world.a.credentials, method, path or sent_path, signed_body)
        return sent_path, dict(headers), route.body

    return attempt


def _timestamped(offset_s: int) -> Callable[[World, Route, str], Attempt]:
    """Correctly signed, `offset_s` seconds away from now: what a replay of a request captured
    that long ago carries (a negative offset), or a clock far ahead (a positive one)."""

    def attempt(world: World, route: Route, path: str) -> Attempt:
        return path, _good(world, route, path, timestamp=int(time.time()) + offset_s), route.body

    return attempt


def _signed_by(pick: Callable[[World], Credentials]) -> Callable[[World, Route, str], Attempt]:
    def attempt(world: World, route: Route, path: str) -> Attempt:
        headers = signed_headers(pick(world), route.method, path, route.body)
        return path, dict(headers), route.body

    return attempt


def _query_not_signed(world: World, route: Route, path: str) -> Attempt:
    return path + "?page=1", _good(world, route, path), route.body


def _other_secret(world: World, route: Route, path: str) -> Attempt:
    headers = signed_headers(
        world.a.credentials, route.method, path, route.body, secret=world.b.credentials.secret_b64
    )
    return path, dict(headers), route.body


def _unknown_key(world: World, route: Route, path: str) -> Attempt:
    return path, {**_good(world, route, path), "X-SCX-API-KEY": secrets.token_hex(16)}, route.body


def _admin_token_only(world: World, route: Route, path: str) -> Attempt:
    return path, {**world.admin, "X-REQUEST-ID": str(uuid.uuid4())}, route.body


def _malformed_body_unsigned(world: World, route: Route, path: str) -> Attempt:
    return path, {"Content-Type": "application/json"}, b'{"quoted_currency": '


MISSING = frozenset({"missing_credentials"})
TIMESTAMP = frozenset({"invalid_timestamp"})
STALE = frozenset({"stale_timestamp"})
SIGNATURE = frozenset({"invalid_signature"})
FORGERIES = [
    Forgery("no headers at all", MISSING, lambda w, r, p: (p, {}, r.body)),
    *(
        Forgery(f"without {header}", MISSING, _without(header))
        for header in ("X-SCX-API-KEY", "X-SCX-SIGNED", "X-SCX-TIMESTAMP", "X-SCX-PASSPHRASE")
    ),
    Forgery(
        "empty header values",
        MISSING,
        _replacing(x_scx_api_key="", x_scx_signed="", x_scx_timestamp="", x_scx_passphrase=""),
    ),
    Forgery("timestamp not a number", TIMESTAMP, _replacing(x_scx_timestamp="yesterday")),
    Forgery("timestamp with a fraction", TIMESTAMP, _replacing(x_scx_timestamp="1714445704.5")),
    Forgery("timestamp negative", TIMESTAMP, _replacing(x_scx_timestamp="-60")),
    Forgery(
        "timestamp in milliseconds",
        TIMESTAMP,
        _replacing(x_scx_timestamp=str(time.time_ns() // 1_000_000)),
    ),
    Forgery(
        "timestamp of non-ASCII digits",
        TIMESTAMP,
        _replacing(x_scx_timestamp="１７１４４４５７０４".encode()),
    ),
    Forgery("signature not base64", SIGNATURE, _replacing(x_scx_signed="%%% not base64 %%%")),
    Forgery("signature of 8000 characters", SIGNATURE, _replacing(x_scx_signed="A" * 8000)),
    Forgery("signature with latin-1 bytes", SIGNATURE, _replacing(x_scx_signed=b"\xff\xfe\xfd")),
    Forgery(
        "api key with latin-1 bytes",
        frozenset({"unknown_api_key"}),
        _replacing(x_scx_api_key=b"\xe9\xff" * 16),
    ),
    Forgery(
        "api key with a NUL character",
        frozenset({"unknown_api_key"}),
        _replacing(x_scx_api_key="ab\x00cd"),
    ),
    Forgery(
        "api key of 8000 characters",
        frozenset({"unknown_api_key"}),
        _replacing(x_scx_api_key="k" * 8000),
    ),
    Forgery(
        "passphrase with latin-1 bytes",
        frozenset({"invalid_passphrase"}),
        _replacing(x_scx_passphrase=b"\xff" * 24),
    ),
    Forgery("signed with another platform's secret", SIGNATURE, _other_secret),
    Forgery("signature of another body", SIGNATURE, _signed_for(body=b'{"other": "body"}')),
    Forgery(
        "signature of another path", SIGNATURE, _signed_for(path=f"/strategies/{uuid.uuid4()}")
    ),
    Forgery("signature of another method", SIGNATURE, _signed_for(other_method=True)),
    Forgery("query string not signed", SIGNATURE, _query_not_signed),
    Forgery("timestamp 61 s old", STALE, _timestamped(-61)),
    # 63, not 61: the signer truncates to whole seconds, so a request signed at x.9 s and
    # checked a second later was only 60 s ahead and got through (a flaky failure).
    Forgery("timestamp 63 s ahead", STALE, _timestamped(63)),
    Forgery("a request replayed 10 minutes later", STALE, _timestamped(-600)),
    Forgery(
        "wrong passphrase",
        frozenset({"invalid_passphrase"}),
        _replacing(x_scx_passphrase=secrets.token_urlsafe(18)),
    ),
    Forgery("unknown api key", frozenset({"unknown_api_key"}), _unknown_key),
    Forgery(
        "key rotated away", frozenset({"unknown_api_key"}), _signed_by(lambda w: w.rotated_away)
    ),
    Forgery("admin token instead of a signature", MISSING, _admin_token_only),
    Forgery("malformed JSON body, no credentials", MISSING, _malformed_body_unsigned),
    Forgery(
        "disabled platform",
        frozenset({"platform_disabled"}),
        _signed_by(lambda w: w.disabled),
        status=403,
    ),
]


def _wire(headers: dict[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    """Headers as raw bytes, so that a forgery can send bytes no client library would."""
    return [
        (name.encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
        for name, value in headers.items()
    ]


async def _send(world: World, route: Route, attempt: Attempt) -> httpx.Response:
    path, headers, body = attempt
    return await world.http.request(route.method, path, headers=_wire(headers), content=body)


def _refusal_problems(response: httpx.Response, status: int, codes: frozenset[str]) -> list[str]:
    """What is wrong with `response` as a refusal: empty when it is the expected problem."""
    problems = []
    if response.status_code != status:
        problems.append(f"status {response.status_code}: {response.text[:300]}")
    elif response.headers.get("content-type") != PROBLEM:
        problems.append(f"content-type {response.headers.get('content-type')}")
    elif response.json().get("code") not in codes:
        problems.append(f"code {response.json().get('code')!r}, expected one of {sorted(codes)}")
    elif status == 401 and "www-authenticate" not in response.headers:
        problems.append("no WWW-Authenticate challenge")
    return problems


def mounted_routes(app: FastAPI) -> list[APIRoute]:
    """Every APIRoute the app serves, documented or not (included routers walked)."""
    found, pending = [], list(app.routes)
    while pending:
        route = pending.pop()
        included = getattr(route, "original_router", None)  # FastAPI's included-router node
        if included is not None:
            pending.extend(included.routes)
        elif isinstance(route, APIRoute):
            found.append(route)
    return found


#: Unsigned on purpose: the server's time, what orchestrators and balancers probe, and the
#: topics' contract (public like /openapi.json).
PUBLIC = {
    ("GET", "/time"),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/asyncapi.json"),
}

#: Pages for people, out of the OpenAPI document: /docs and /asyncapi are public like the
#: documents they show; the dashboard's own session check guards the rest
#: (tests/integration/test_dashboard_http.py).
PAGES = {
    ("GET", "/docs"),
    ("GET", "/asyncapi"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/live"),
    ("POST", "/dashboard/login"),
    ("POST", "/dashboard/logout"),
    ("POST", "/dashboard/redeliver"),
}


def test_only_time_and_health_are_public(world: World) -> None:
    """Any new route must either be signed or be an admin route, or this fails."""
    public = {
        (route.method, route.template)
        for route, operation in documented_routes(world.app)
        if not is_signed(operation) and not is_admin(route)
    }
    assert public == PUBLIC
    assert len(signed_routes(world.app)) >= 16
    assert len(admin_routes(world.app)) >= 9


def test_every_served_route_is_documented_and_checks_its_caller_first(world: World) -> None:
    """No hidden route escapes the checks above, and every guarded route checks its caller
    before FastAPI parses the body (`CallerFirstRoute`)."""
    served = {(m, r.path): r for r in mounted_routes(world.app) for m in r.methods or ()}
    documented = {(route.method, route.template) for route, _ in documented_routes(world.app)}
    assert set(served) == documented | PAGES
    unguarded = {key for key, r in served.items() if not isinstance(r, CallerFirstRoute)}
    assert unguarded == PUBLIC | PAGES


@pytest.mark.parametrize("forgery", FORGERIES, ids=[f.name for f in FORGERIES])
async def test_every_signed_route_refuses_bad_credentials_with_a_problem(
    world: World, forgery: Forgery
) -> None:
    failures = []
    for route in signed_routes(world.app):
        path = route.path(world.a.platform_id)
        response = await _send(world, route, forgery.attempt(world, route, path))
        failures += [
            f"{route.method} {route.template}: {problem}"
            for problem in _refusal_problems(response, forgery.status, forgery.codes)
        ]
    assert not failures, "\n".join(failures)


async def test_a_correctly_signed_request_passes_the_check_on_every_route(world: World) -> None:
    """The control for the forgeries: without them the same requests get past authentication
    (random ids answer 404, a body that is not an Operation 400; never 401 or 403)."""
    for route in signed_routes(world.app):
        path = route.path(world.a.platform_id)
        headers = signed_headers(world.a.credentials, route.method, path, route.body)
        response = await world.http.request(route.method, path, headers=headers, content=route.body)
        assert response.status_code not in (401, 403), (route, response.text)
        assert response.status_code < 500, (route, response.text)


async def test_a_request_replayed_inside_the_window_changes_nothing(world: World) -> None:
    """Within the 60 s the signature cannot tell a replay; X-REQUEST-ID does: the same signed
    mutation sent again answers the original resource (200) and writes nothing."""
    path, body = "/strategies", b'{"quoted_currency": "USD"}'
    headers = signed_headers(world.a.credentials, "POST", path, body)
    first = await world.http.post(path, content=body, headers=headers)
    position = await world.notification_position()
    again = await world.http.post(path, content=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json() == first.json()
    assert await world.notification_position() == position


async def test_a_captured_mutation_replayed_under_a_new_request_id_is_refused(
    world: World,
) -> None:
    """The request id is not signed: a signature already used with one X-REQUEST-ID does not
    vouch for another (a second enrollment of the same money, say)."""
    path, body = "/strategies", b'{"quoted_currency": "USD"}'
    headers = signed_headers(world.a.credentials, "POST", path, body)
    first = await world.http.post(path, content=body, headers=headers)
    position = await world.notification_position()
    for _ in range(3):
        replayed = await world.http.post(
            path, content=body, headers={**headers, "X-REQUEST-ID": str(uuid.uuid4())}
        )
        assert (first.status_code, replayed.status_code) == (201, 401), replayed.text
        assert replayed.json()["code"] == "replayed_signature"
    assert await world.notification_position() == position


def _admin_attempts(world: World) -> dict[str, dict[str, str | bytes]]:
    basic = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
    return {
        "no Authorization": {},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong token": {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"},
        "token cut short": {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        "token with more": {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        "token as Basic credentials": {"Authorization": f"Basic {basic}"},
        "latin-1 bytes": {"Authorization": b"Bearer \xff\xfe"},
    }


async def test_every_admin_route_refuses_anything_but_the_admin_token(world: World) -> None:
    failures = []
    for route in admin_routes(world.app):
        path = route.path(world.a.platform_id)
        attempts = _admin_attempts(world)
        attempts["a platform's valid signature"] = _good(world, route, path)
        for name, headers in attempts.items():
            for body in (route.body, b"{not json"):
                response = await world.http.request(
                    route.method, path, headers=_wire(headers), content=body
                )
                codes = frozenset({"invalid_admin_token"})
                failures += [
                    f"{route.method} {route.template} with {name}, body {body!r}: {problem}"
                    for problem in _refusal_problems(response, 401, codes)
                ]
    assert not failures, "\n".join(failures)


# -- isolation ---------------------------------------------------------------------------------
def shape(response: httpx.Response, identifier: str) -> tuple[int, str | None, Any]:
    """What a caller can compare between two answers: the status, the media type and the body
    with the asked-for id blanked out (and the per-request correlation id dropped)."""
    body = json.loads(response.text.replace(identifier, "<id>"))
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, response.headers.get("content-type"), body


async def _same_as_unknown(
    client: SignedClient, template: str, theirs: str, *, method: str = "GET", body: Any = None
) -> tuple[int, str | None, Any]:
    """A's answer for B's id, after checking it is A's answer for an id that does not exist."""
    unknown = str(uuid.uuid4())
    for_theirs = await client.request(method, template.format(theirs), body)
    for_unknown = await client.request(method, template.format(unknown), body)
    assert shape(for_theirs, theirs) == shape(for_unknown, unknown), (
        for_theirs.text,
        for_unknown.text,
    )
    return shape(for_theirs, theirs)


async def test_another_platforms_resources_read_like_ids_that_do_not_exist(world: World) -> None:
    a, b = world.a, world.b
    owned = [
        ("/strategies/{}", b.strategy["id"], "strategy_not_found"),
        ("/strategies/operations/{}", b.operation["id"], "operation_not_found"),
        ("/strategies/traders/{}", b.traders[0]["id"], "trader_not_found"),
        ("/strategies/executions/{}", b.executions[0]["id"], "execution_not_found"),
    ]
    for template, theirs, code in owned:
        assert (await b.client.get(template.format(theirs))).status_code == 200  # it exists
        status, media_type, body = await _same_as_unknown(a.client, template, theirs)
        assert (status, media_type, body["code"]) == (404, PROBLEM, code)


async def test_list_filters_on_another_platforms_ids_answer_like_unknown_ids(
    world: World,
) -> None:
    a, b = world.a, world.b
    empty = {"message": [], "page": 1, "size": 50, "total_pages": 1}
    filters = [
        ("/strategies/operations?strategy_id={}", b.strategy["id"]),
        ("/strategies/operations?request_id={}", b.operation["request_id"]),
        ("/strategies/executions?strategy_id={}", b.strategy["id"]),
        ("/strategies/executions?operation_id={}", b.operation["id"]),
        ("/strategies/executions?trader_id={}", b.traders[0]["id"]),
        ("/strategies/traders?strategy_id={}", b.strategy["id"]),
    ]
    for template, theirs in filters:
        assert (await b.client.get(template.format(theirs))).json()["message"]  # B sees it
        assert await _same_as_unknown(a.client, template, theirs) == (
            200,
            "application/json",
            empty,
        )


async def test_a_participant_code_both_platforms_use_lists_only_the_callers(world: World) -> None:
    a, b = world.a, world.b
    for template in (
        "/strategies/traders?participant_code=P1",
        "/strategies/executions?participant_code=P1",
    ):
        mine = await _items(a.client, template)
        assert [item["strategy_id"] for item in mine] == [a.strategy["id"]]
    assert await _items(a.client, "/strategies/traders?participant_code=P3") == []
    assert len(await _items(b.client, "/strategies/traders?participant_code=P3")) == 1


async def test_unfiltered_lists_hold_only_the_callers_resources(world: World) -> None:
    a, b = world.a, world.b
    for path in (
        "/strategies",
        "/strategies/operations",
        "/strategies/executions",
        "/strategies/traders",
    ):
        seen = {item["id"] for item in await _all_pages(a.client, path)}
        assert seen, path
        assert not seen & b.ids, path
    traders = {item["id"] for item in await _all_pages(a.client, "/strategies/traders")}
    assert traders == {trader["id"] for trader in a.traders}


async def test_page_numbers_count_only_the_callers_resources(world: World) -> None:
    """B has three Traders and A two: A's third page of one is empty, exactly like any page
    past its end, so B's page count tells A nothing and A's tells nothing about B."""
    a, b = world.a, world.b
    theirs = (await b.client.get("/strategies/traders?size=1&page=3")).json()
    assert (len(theirs["message"]), theirs["total_pages"]) == (1, 3)
    third = (await a.client.get("/strategies/traders?size=1&page=3")).json()
    far = (await a.client.get("/strategies/traders?size=1&page=99")).json()
    assert third == {"message": [], "page": 3, "size": 1, "total_pages": 2}
    assert {**far, "page": 3} == third


async def test_the_event_feed_serves_only_the_callers_aggregates(world: World) -> None:
    a, b = world.a, world.b
    mine, _ = await _all_events(a.client)
    theirs, _ = await _all_events(b.client)
    assert {a.strategy["id"], a.operation["id"]} <= {e["aggregate_id"] for e in mine}
    assert {b.strategy["id"], b.operation["id"]} <= {e["aggregate_id"] for e in theirs}
    assert not {e["aggregate_id"] for e in mine} & {e["aggregate_id"] for e in theirs}
    text = json.dumps(mine)
    leaked = [identifier for identifier in b.ids if identifier in text]
    assert not leaked, f"B's ids in A's feed: {leaked}"


async def test_the_event_feed_resumes_after_any_of_the_callers_cursors(world: World) -> None:
    mine, end = await _all_events(world.a.client)
    for index in (0, len(mine) // 2, len(mine) - 1):
        after, _ = await _all_events(world.a.client, after=mine[index]["cursor"])
        assert after == mine[index + 1 :]
    assert await _all_events(world.a.client, after=end) == ([], end)


async def test_another_platforms_cursors_are_refused_like_garbage(world: World) -> None:
    """Cursors hide the log's positions (which count every platform's events) and are bound
    to the platform they were given to."""
    theirs, their_end = await _all_events(world.b.client)
    mine, _ = await _all_events(world.a.client)
    assert not any("position" in event for event in mine + theirs)
    garbage = "A" * len(their_end)
    for cursor in (theirs[0]["cursor"], theirs[-1]["cursor"], their_end, garbage, "1", "0"):
        response = await world.a.client.get(f"/strategies/events?after={cursor}")
        assert response.status_code == 400, (cursor, response.text)
        assert response.json()["code"] == "invalid_cursor"


async def test_a_platform_cannot_change_another_platforms_trader(world: World) -> None:
    a, b = world.a, world.b
    trader = b.traders[0]
    before = (await b.client.get(f"/strategies/traders/{trader['id']}")).json()
    position = await world.notification_position()
    status, _, body = await _same_as_unknown(
        a.client,
        "/strategies/traders/{}",
        trader["id"],
        method="PATCH",
        body={"auto_rebalance": False},
    )
    assert (status, body["code"]) == (404, "trader_not_found")
    assert (await b.client.get(f"/strategies/traders/{trader['id']}")).json() == before
    assert await world.notification_position() == position


OPERATION_BODIES = {
    "enroll": {
        "allocations": ALLOCATIONS,
        "participants": [{"participant_code": "P1", "amount": "10.00"}],
    },
    "top-up": {
        "allocations": ALLOCATIONS,
        "participants": [{"participant_code": "P1", "amount": "10.00"}],
    },
    "partial-sell": {
        "allocations": ALLOCATIONS,
        "participants": [{"participant_code": "P1", "amount": "10.00"}],
    },
    "rebalance": {"allocations": ALLOCATIONS},  # nobody named: the scope comes from the roster
    "liquidate": {"all": True},
}


async def test_a_platform_cannot_request_an_operation_on_another_platforms_strategy(
    world: World,
) -> None:
    a, b = world.a, world.b
    position = await world.notification_position()
    for path, body in OPERATION_BODIES.items():
        status, _, problem = await _same_as_unknown(
            a.client, "/strategies/{}/" + path, b.strategy["id"], method="POST", body=body
        )
        assert (status, problem["code"]) == (404, "strategy_not_found"), path
    assert await world.notification_position() == position  # nothing was written
    assert len(await _items(b.client, "/strategies/operations")) == 1


async def test_another_platforms_request_id_makes_a_new_resource_not_a_replay(
    world: World,
) -> None:
    a, b = world.a, world.b
    reused = await a.client.post(
        "/strategies", {"quoted_currency": "USD"}, request_id=b.strategy["request_id"]
    )
    assert reused.status_code == 201, reused.text
    assert reused.json()["id"] != b.strategy["id"]
    assert (await b.client.get(f"/strategies/{b.strategy['id']}")).json() == b.strategy


async def test_webhook_deliveries_of_a_platform_concern_only_its_own_objects(
    world: World,
) -> None:
    for side, other in ((world.a, world.b), (world.b, world.a)):
        sub = side.subscription["id"]
        log = await world.http.get(
            f"/admin/platforms/{side.platform_id}/webhooks/{sub}/deliveries?size=200",
            headers=world.admin,
        )
        assert log.status_code == 200, log.text
        objects = {delivery["object_id"] for delivery in log.json()["message"]}
        assert objects, "no notification was recorded"
        assert objects <= side.ids
        assert not objects & other.ids
        async with world.engine.pool.acquire() as connection:
            platforms = await connection.fetch(
                "SELECT DISTINCT platform_id FROM webhook_deliveries WHERE subscription_id = $1",
                uuid.UUID(sub),
            )
        assert [row["platform_id"] for row in platforms] == [side.platform_id]


async def test_another_platforms_subscription_reads_like_an_unknown_one(world: World) -> None:
    a, b = world.a, world.b
    theirs = b.subscription["id"]
    base = f"/admin/platforms/{a.platform_id}/webhooks"
    log = await world.http.get(
        f"/admin/platforms/{b.platform_id}/webhooks/{theirs}/deliveries", headers=world.admin
    )
    delivery = log.json()["message"][0]["id"]
    attempts = [
        ("GET", base + "/{}/deliveries", theirs),
        ("DELETE", base + "/{}", theirs),
        ("POST", base + "/" + theirs + "/deliveries/{}/redeliver", delivery),
        ("POST", base + "/{}/deliveries/" + delivery + "/redeliver", theirs),
    ]
    for method, template, identifier in attempts:
        unknown = str(uuid.uuid4())
        for_theirs = await world.http.request(
            method, template.format(identifier), headers=world.admin
        )
        for_unknown = await world.http.request(
            method, template.format(unknown), headers=world.admin
        )
        assert for_theirs.status_code == 404, (method, template, for_theirs.text)
        assert shape(for_theirs, identifier) == shape(for_unknown, unknown)
    listed = await world.http.get(base, headers=world.admin)
    assert [s["id"] for s in listed.json()] == [a.subscription["id"]]
    still = await world.http.get(f"/admin/platforms/{b.platform_id}/webhooks", headers=world.admin)
    assert [s["id"] for s in still.json()] == [theirs]  # the DELETE under A's path did nothing


async def _all_pages(client: SignedClient, path: str) -> list[dict[str, Any]]:
    items, page = [], 1
    while True:
        answer = (await client.get(f"{path}?size=200&page={page}")).json()
        items += answer["message"]
        if page >= answer["total_pages"]:
            return items
        page += 1


async def _all_events(client: SignedClient, after: str = "") -> tuple[list[dict[str, Any]], str]:
    events: list[dict[str, Any]] = []
    cursor = after
    while True:
        response = await client.get(f"/strategies/events?after={cursor}&limit=1000")
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if not page["events"] and page["next"] == cursor:
            return events, cursor
        cursor = page["next"]


# -- limits ------------------------------------------------------------------------------------
async def _written(world: World) -> tuple[int, int]:
    """Everything a refused request could have written: events (request keys among them) and
    read-model operations."""
    async with world.engine.pool.acquire() as connection:
        operations = await connection.fetchval("SELECT count(*) FROM operations")
    return await world.notification_position(), int(operations)


def _funded(count: int) -> list[dict[str, Any]]:
    return [{"participant_code": f"L{i:05d}", "amount": "1.00"} for i in range(count)]


async def test_a_body_over_the_limit_is_a_413_and_writes_nothing(world: World) -> None:
    before = await _written(world)
    path = f"/strategies/{world.a.strategy['id']}/enroll"
    body = json.dumps({"allocations": ALLOCATIONS, "participants": _funded(25_000)}).encode()
    assert len(body) > MAX_BODY_BYTES
    signed = await world.http.post(
        path, content=body, headers=signed_headers(world.a.credentials, "POST", path, body)
    )
    unsigned = await world.http.post(
        path, content=body, headers={"Content-Type": "application/json"}
    )
    admin = await world.http.put(
        f"/admin/platforms/{A}/participants", content=body, headers=world.admin
    )
    for response in (signed, unsigned, admin):
        assert not _refusal_problems(response, 413, frozenset({"request_too_large"})), response.text
    assert await _written(world) == before


async def test_more_than_10000_participants_is_a_400_problem_and_writes_nothing(
    world: World,
) -> None:
    before = await _written(world)
    strategy = world.a.strategy["id"]
    too_many = _funded(10_001)
    named = [{"participant_code": p["participant_code"]} for p in too_many]
    requests = {
        "enroll": {"allocations": ALLOCATIONS, "participants": too_many},
        "top-up": {"allocations": ALLOCATIONS, "participants": too_many},
        "partial-sell": {"allocations": ALLOCATIONS, "participants": too_many},
        "rebalance": {"allocations": ALLOCATIONS, "participants": named},
        "liquidate": {"participants": named},
    }
    for path, body in requests.items():
        response = await world.a.client.post(f"/strategies/{strategy}/{path}", body)
        assert not _refusal_problems(response, 400, frozenset({"invalid_participants"})), path
        assert {"field": "participants", "message": "at most 10000 entries"} in response.json()[
            "errors"
        ]
    admin = await world.http.put(
        f"/admin/platforms/{A}/participants", json={"participants": named}, headers=world.admin
    )
    assert not _refusal_problems(admin, 400, frozenset({"invalid_request"})), admin.text
    assert await _written(world) == before


# -- secrets -----------------------------------------------------------------------------------
def _secret_forms(credentials: Credentials) -> list[str]:
    raw = base64.b64decode(credentials.secret_b64)
    return [
        credentials.secret_b64,
        base64.urlsafe_b64encode(raw).decode(),
        raw.hex(),
        credentials.passphrase,
    ]


async def test_no_secret_is_ever_logged_or_answered_in_an_error(world: World) -> None:
    """Runs last: the logs hold the whole module (start-up, platform creation, every forgery
    above, the webhook attempts) plus what this test adds itself."""
    late = await create_platform(world.engine.pool, "SECLOG", "Logged", world.app.state.secret_box)
    client = SignedClient(world.http, late)
    assert (await client.get("/strategies")).status_code == 200
    good = signed_headers(late, "GET", "/strategies", None)
    forged = base64.b64encode(secrets.token_bytes(32)).decode()
    for changes in (
        {"X-SCX-PASSPHRASE": secrets.token_urlsafe(18)},
        {"X-SCX-SIGNED": forged},
        {"X-SCX-API-KEY": secrets.token_hex(16)},
    ):
        refused = await world.http.get("/strategies", headers={**good, **changes})
        assert refused.status_code == 401
    wrong_admin = {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}
    assert (await world.http.get("/admin/instruments", headers=wrong_admin)).status_code == 401
    hook = {"url": HOOK_URL, "payload_types": PAYLOAD_TYPES}
    created = await world.http.post(
        "/admin/platforms/SECLOG/webhooks", json=hook, headers=world.admin
    )
    assert created.status_code == 201, created.text
    world.webhook_secrets.append(created.json()["secret"])
    await asyncio.sleep(0.5)  # let the webhook sender try A's and B's receivers once more

    secrets_of_platforms = [
        form
        for credentials in [*world.every_credentials, late]
        for form in _secret_forms(credentials)
    ]
    sent = [value for value in world.traffic.header_values if len(value) >= 16]
    never_anywhere = [*secrets_of_platforms, *sent, MASTER_KEY, ADMIN_TOKEN]
    logged = world.logs.getvalue()
    assert "auth.refused" in logged and "http.request" in logged  # the capture works
    assert "webhooks.attempt_failed" in logged  # and covered the webhook sender
    for secret in [*never_anywhere, *world.webhook_secrets]:
        assert secret not in logged, "a secret is in the logs"
    for request, status, body in world.traffic.responses:
        for secret in never_anywhere:
            assert secret not in body, f"a secret in the answer to {request} ({status})"
        if not (request.startswith("POST /admin/") and request.endswith("/webhooks")):
            for secret in world.webhook_secrets:  # shown once, in its creation answer only
                assert secret not in body, f"a webhook secret in the answer to {request}"
