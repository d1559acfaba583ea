"""Fuzzing the HTTP API (issue 9, item 3): schemathesis generates requests for every operation
of the app's own OpenAPI document, each one signed as a platform signs it (X-SCX-* over method,
path with query and the exact body bytes, a fresh X-REQUEST-ID on mutations, the admin bearer
token), and sends them in-process to the real app: a real PostgreSQL and the embedded engine
(the in-process bus, every pipeline role) started by the app's own lifespan.

The promise: no generated request gets a 5xx, and every answer is one the document promises
(a documented status code, its content type, its body schema). Besides schemathesis' positive
and negative cases, some cases aim past the outer checks: path ids of real Strategies,
Traders, Operations and Executions, and operation bodies with valid allocations around hostile
participants and decimals, so that the domain's validation is fuzzed too. Afterwards the
pipeline must still be live: a new Strategy reaches the read models.

The CI form runs FUZZ_EXAMPLES (default 30) cases per operation; run longer on demand, e.g.
`FUZZ_EXAMPLES=500 uv run pytest tests/integration/test_fuzz_api.py -s --no-cov`. The cases
run and the 5xx seen are printed (-s).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from anyio.from_thread import BlockingPortal, start_blocking_portal
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_dict
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.auth import HEADERS as SIGNING_HEADERS
from api.idempotency import REQUEST_ID_HEADER
from infra.bootstrap.http import create_app
from infra.postgres.platforms import Credentials, create_platform
from infra.settings import Settings
from tests.e2e.client import fresh_signature
from tests.integration.pipeline.harness import quiet_logs

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "30"))
# A longer run on demand needs a longer budget than the suite's 300 s per test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300 + 3 * EXAMPLES)]
BASE_URL = "http://fuzz.test"
PLATFORM = "FUZZ01"
ADMIN_TOKEN = "admin-" + secrets.token_hex(8)
CODES = [f"F{i:03d}" for i in range(10)]
BLUE_CHIP = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
MUTATIONS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Replaced on every request by the signer: generated values would only be overwritten.
SIGNER_HEADERS = frozenset(h.lower() for h in (*SIGNING_HEADERS, REQUEST_ID_HEADER))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
OPERATION_BODY = re.compile(r"^/strategies/\{strategy_id\}/(enroll|top-up|partial-sell|rebalance)$")
PATH_PARAMETER = re.compile(r"\{(\w+)\}")
SETTLE_TIMEOUT_S = 90

# -- hostile values, for the cases that get past the outer checks ------------------------

AMOUNTS = st.one_of(
    st.sampled_from(
        [
            "1e26",
            "100000000000000000000000000",
            "1E+999999",
            "9" * 400,
            "-5.00",
            "0",
            "-0",
            "0.001",
            "1e-999999999",
            "NaN",
            "-Infinity",
            "sNaN",
            "1e15",
            "999999999999999.99",
            "1_000",
            " 7 ",
            "",
            "0x10",
            "１２",
            "²",
        ]
    ),
    st.decimals(min_value=-(10**6), max_value=10**6, places=2).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
)
TEXT = st.one_of(
    st.sampled_from(
        ["\x00", "F\x00001", "\ud800", "\udfff F", " F001", "F001 ", "x" * 65, "", "\u202eF001"]
    ),
    st.text(max_size=70),
)
PARTICIPANT_CODES = st.one_of(st.sampled_from([*CODES, "GHOST1"]), TEXT)
ASSETS = st.one_of(st.sampled_from(["BTC", "ETH", "SOL", "ADA", "USD", "XXX"]), TEXT)
ALLOCATIONS = st.one_of(
    st.just(BLUE_CHIP),
    st.lists(
        st.fixed_dictionaries({"underlying_currency": ASSETS, "weight": AMOUNTS}),
        min_size=1,
        max_size=4,
    ),
)
FUNDED = st.lists(
    st.fixed_dictionaries(
        {"participant_code": PARTICIPANT_CODES, "amount": AMOUNTS},
        optional={"auto_rebalance": st.booleans()},
    ),
    min_size=1,
    max_size=6,
)
NAMED = st.lists(
    st.one_of(PARTICIPANT_CODES, st.fixed_dictionaries({"participant_code": PARTICIPANT_CODES})),
    min_size=1,
    max_size=6,
)
JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), TEXT
)
METADATA = st.dictionaries(
    TEXT,
    st.recursive(
        JSON_LEAVES,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
        max_leaves=8,
    ),
    max_size=4,
)


def operation_body(action: str) -> st.SearchStrategy[dict[str, Any]]:
    if action in ("enroll", "top-up", "partial-sell"):
        return st.fixed_dictionaries({"allocations": ALLOCATIONS, "participants": FUNDED})
    return st.fixed_dictionaries(
        {"allocations": ALLOCATIONS},
        optional={"participants": NAMED, "drift_tolerance": AMOUNTS},
    )


LIQUIDATION = st.one_of(
    st.fixed_dictionaries({"participants": NAMED}),
    st.just({"all": True}),
    st.fixed_dictionaries({"participants": NAMED, "all": st.booleans()}),
)
NEW_STRATEGY = st.fixed_dictionaries(
    {"quoted_currency": st.sampled_from(["USD", "EUR", "JPY", "XYZ"]) | TEXT},
    optional={"metadata": METADATA},
)


# -- the app, in-process, with every request signed ---------------------------------------


class PlatformSigner(httpx.Auth):
    """Signs exactly what reaches the app: httpx's ASGI transport hands it the request's raw
    path (split at '?') and query string, which `api.auth.path_with_query` joins again."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        path = request.url.raw_path.split(b"?")[0].decode("latin-1")
        query = request.url.query.decode("latin-1")
        target = f"{path}?{query}" if query else path
        timestamp, signature = fresh_signature(
            self.credentials.secret_b64, request.method, target, request.content
        )
        request.headers["X-SCX-API-KEY"] = self.credentials.api_key
        request.headers["X-SCX-TIMESTAMP"] = str(timestamp)
        request.headers["X-SCX-PASSPHRASE"] = self.credentials.passphrase
        request.headers["X-SCX-SIGNED"] = signature
        if request.method in MUTATIONS:
            request.headers[REQUEST_ID_HEADER] = str(uuid.uuid4())
        request.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield request


@dataclass
class Tally:
    """What one operation's fuzzing did: the figures the issue asks for."""

    cases: int = 0
    server_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failure: str | None = None


class InProcessAPI:
    """Sends schemathesis cases to the app through httpx's ASGI transport, on the event loop
    the app's lifespan (and so its engine and pools) runs on."""

    def __init__(self, portal: BlockingPortal, http: httpx.AsyncClient) -> None:
        self.portal = portal
        self.http = http
        self.signer: PlatformSigner | None = None

    def send(self, case: Case) -> httpx.Response:
        """The case as schemathesis serialises it (requests' encoding), then signed."""
        kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        prepared = requests.Request(
            method=kwargs["method"],
            url=kwargs["url"],
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            cookies=kwargs.get("cookies"),
            json=kwargs.get("json"),
            data=kwargs.get("data"),
            files=kwargs.get("files"),
        ).prepare()
        body = prepared.body or b""
        headers = [
            (name, value)
            for name, value in prepared.headers.items()
            if name.lower() not in SIGNER_HEADERS
        ]
        request = httpx.Request(
            prepared.method or case.method,
            prepared.url or BASE_URL,
            headers=headers,
            content=body.encode() if isinstance(body, str) else body,
        )
        return self.portal.call(self._send, request)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        return await self.http.send(request, auth=self.signer or httpx.USE_CLIENT_DEFAULT)

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        async def send() -> httpx.Response:
            return await self.http.request(method, path, json=body, auth=self.signer)

        return self.portal.call(send)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL, timeout=60
        ) as http,
    ):
        yield http


# -- the seed: real ids for the path parameters --------------------------------------------


def seed(api: InProcessAPI, portal: BlockingPortal, app: FastAPI) -> dict[str, str]:
    """A platform with participants and float, a Strategy and a settled enrollment: the
    ids a fuzzed path may name besides random ones."""
    engine = app.state.engine
    assert engine is not None, "the embedded engine did not start (see the log above)"

    async def platform() -> Credentials:
        await engine.call(engine.trading.register_participants, PLATFORM, CODES)
        await engine.call(
            engine.trading.deposit_float, PLATFORM, "USD", Decimal("1000000.00"), "FUZZ-FLOAT"
        )
        return await create_platform(app.state.db_pool, PLATFORM, "Fuzzing", app.state.secret_box)

    api.signer = PlatformSigner(portal.call(platform))
    strategy = api.call("POST", "/strategies", {"quoted_currency": "USD"})
    assert strategy.status_code == 201, strategy.text
    strategy_id = strategy.json()["id"]
    participants = [{"participant_code": c, "amount": "250.00"} for c in CODES[:6]]
    enrolled = api.call(
        "POST",
        f"/strategies/{strategy_id}/enroll",
        {"allocations": BLUE_CHIP, "participants": participants},
    )
    assert enrolled.status_code == 202, enrolled.text
    operation_id = enrolled.json()["id"]
    executions: list[dict[str, Any]] = []
    traders: list[dict[str, Any]] = []
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        operation = api.call("GET", f"/strategies/operations/{operation_id}").json()
        traders = api.call("GET", f"/strategies/traders?strategy_id={strategy_id}").json()[
            "message"
        ]
        executions = api.call("GET", f"/strategies/executions?operation_id={operation_id}").json()[
            "message"
        ]
        if operation["status"] == "settled" and len(traders) == len(executions) == 6:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the seed enrollment did not settle: {operation}")
    return {
        "strategy_id": strategy_id,
        "operation_id": operation_id,
        "trader_id": traders[0]["id"],
        "execution_id": executions[0]["id"],
    }


# -- the strategies of cases ----------------------------------------------------------------


def with_body(case: Case, body: Any) -> Case:
    case.body = body
    return case


def cases_for(operation: Any, known: dict[str, str]) -> st.SearchStrategy[Case]:
    """schemathesis' positive and negative cases, plus cases on real ids and deep bodies."""
    variants: list[st.SearchStrategy[Case]] = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    names = PATH_PARAMETER.findall(operation.path)
    if names and all(name in known for name in names):
        anchored = operation.as_strategy(
            GenerationMode.POSITIVE, path_parameters={name: known[name] for name in names}
        )
        variants.append(anchored)
        action = OPERATION_BODY.match(operation.path)
        if action and operation.method.upper() == "POST":
            variants.append(
                st.tuples(anchored, operation_body(action.group(1))).map(lambda p: with_body(*p))
            )
        if operation.path.endswith("/liquidate") and operation.method.upper() == "POST":
            variants.append(st.tuples(anchored, LIQUIDATION).map(lambda p: with_body(*p)))
    if operation.path == "/strategies" and operation.method.upper() == "POST":
        positive = operation.as_strategy(GenerationMode.POSITIVE)
        variants.append(st.tuples(positive, NEW_STRATEGY).map(lambda p: with_body(*p)))
    return st.one_of(variants)


def fuzz(operation: Any, cases: st.SearchStrategy[Case], send: Callable[[Case], Any]) -> Tally:
    tally = Tally()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Case) -> None:
        response = send(case)
        tally.cases += 1
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        if response.status_code >= 500:
            tally.server_errors += 1
        case.validate_response(response, checks=CHECKS)

    # Recorded per operation, so that every operation is fuzzed and reported before the test
    # fails; schemathesis' FailureGroup is a BaseExceptionGroup, not an Exception.
    try:
        run()
    except (Exception, BaseExceptionGroup) as failure:
        tally.failure = f"{type(failure).__name__}: {failure}"[:4000]
    return tally


def deep(levels: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(levels - 1):
        nested = [nested]
    return nested


def explicit_cases(known: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Values that once got a 5xx (or would have), sent on every run whatever the generator
    draws: hypothesis' explicit examples, for cases built around real ids."""
    strategy = {"strategy_id": known["strategy_id"]}
    json = "application/json"

    def enroll(amount: str, code: str = "F001") -> dict[str, Any]:
        participants = [{"participant_code": code, "amount": amount}]
        body = {"allocations": BLUE_CHIP, "participants": participants}
        return {"path_parameters": strategy, "body": body, "media_type": json}

    def metadata(value: Any) -> dict[str, Any]:
        body = {"quoted_currency": "USD", "metadata": {"k": value}}
        return {"body": body, "media_type": json}

    enroll_label = "POST /strategies/{strategy_id}/enroll"
    return [
        *((enroll_label, enroll(a)) for a in ("1e26", "1E+999999", "9" * 400, "1e15", "NaN")),
        *((enroll_label, enroll("10.00", c)) for c in ("F\x00", "\x00", "\ud800", "\u200b")),
        *(("POST /strategies", metadata(v)) for v in ("\x00", "\ud800", ["\udfff"], deep(300))),
        ("GET /strategies", {"query": {"page": 2**63}}),
        ("GET /strategies/operations", {"query": {"created_at[gte]": "9999-12-31T23:59:59-14:00"}}),
        ("GET /strategies/operations", {"query": {"created_at[lt]": "0001-01-01T00:00:00+14:00"}}),
        ("GET /strategies/traders", {"query": {"participant_code": "\x00"}}),
        ("GET /strategies/executions", {"query": {"participant_code": "F\x00"}}),
        ("GET /strategies/events", {"query": {"after": "²"}}),
        ("GET /strategies/events", {"query": {"limit": "1" * 5000}}),
        (
            "GET /admin/platforms/{platform_id}/webhooks",
            {"path_parameters": {"platform_id": "\x00"}},
        ),
    ]


def run_explicit(
    label: str, operation: Any, make: dict[str, Any], send: Callable[[Case], Any], tally: Tally
) -> None:
    case = operation.Case(**make)
    response = send(case)
    tally.cases += 1
    tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
    if response.status_code >= 500:
        tally.server_errors += 1
    try:
        case.validate_response(response, checks=CHECKS)
    except (Exception, BaseExceptionGroup) as failure:
        found = f"explicit {make}: {type(failure).__name__}: {failure}"[:2000]
        tally.failure = f"{tally.failure}\n{found}" if tally.failure else found


# -- the test ------------------------------------------------------------------------------


def test_no_generated_request_gets_a_5xx_or_an_answer_the_openapi_document_does_not_promise(
    fresh_database_url: str, tmp_path: Path
) -> None:
    settings_ = Settings(
        database_url=fresh_database_url,
        kafka_bootstrap_servers=None,  # the embedded engine: in-process bus, every role here
        data_dir=tmp_path,
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        admin_token=ADMIN_TOKEN,
        chunk_size=3,
    )
    app = create_app(settings_, fresh_database_url, roles=("all",))
    schema = from_dict(app.openapi())
    tallies: dict[str, Tally] = {}
    started = time.monotonic()
    with (
        quiet_logs(),
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serving(app)) as http,
    ):
        api = InProcessAPI(portal, http)
        known = seed(api, portal, app)
        operations = {result.ok().label: result.ok() for result in schema.get_all_operations()}
        for label, operation in operations.items():
            tallies[label] = fuzz(operation, cases_for(operation, known), api.send)
        for label, make in explicit_cases(known):
            run_explicit(label, operations[label], make, api.send, tallies[label])
        # Still live after all that: a new Strategy reaches the read models (a fuzzed value
        # that no projection can store would leave their consumer retrying it forever).
        created = api.call("POST", "/strategies", {"quoted_currency": "EUR"})
        assert created.status_code == 201, created.text
        listed: list[str] = []
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while created.json()["id"] not in listed and time.monotonic() < deadline:
            time.sleep(0.2)
            listed = [s["id"] for s in api.call("GET", "/strategies?size=200").json()["message"]]
    elapsed = time.monotonic() - started

    total = sum(t.cases for t in tallies.values())
    server_errors = sum(t.server_errors for t in tallies.values())
    print(
        f"\nfuzz api: {len(tallies)} operations, {total} cases, {server_errors} 5xx, "
        f"{elapsed:.0f} s (FUZZ_EXAMPLES={EXAMPLES})"
    )
    for label, tally in tallies.items():
        statuses = ",".join(f"{code}x{n}" for code, n in sorted(tally.statuses.items()))
        flag = "  FAILED" if tally.failure else ""
        print(f"  {label:<75} {tally.cases:>4} cases  5xx={tally.server_errors}  {statuses}{flag}")
    failures = {label: t.failure for label, t in tallies.items() if t.failure}
    assert not failures, "\n\n".join(f"{label}\n{failure}" for label, failure in failures.items())
    assert server_errors == 0
    # Every request was validly signed: a refusal would mean the cases never got past auth.
    refused = {label: t.statuses.get(401, 0) for label, t in tallies.items()}
    assert not any(refused.values()), refused
    assert created.json()["id"] in listed, "the read models stopped after the fuzzing"
