"""The spec's story over HTTP against real processes: `strategies serve` and `strategies worker
all` on real Kafka and PostgreSQL, a platform created with the CLI, every request signed."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from infra.postgres.platforms import Credentials
from tests.cli import run_cli
from tests.e2e.client import SignedClient
from tests.integration.processes import api_and_workers, pipeline_env, ready_platform

pytestmark = pytest.mark.e2e
PLATFORM = "E2E01"
ALLOCATIONS = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
ONE_PARTICIPANT = [{"participant_code": "U0", "amount": "10.00"}]


def cli(env: dict[str, str], *args: str) -> str:
    done = run_cli(env, *args)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


async def create_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def services(
    postgres_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh database, the API and the workers as separate processes."""
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    asyncio.run(create_database(postgres_url, database))
    url = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    logs = tmp_path_factory.mktemp("e2e")
    env = pipeline_env(url, kafka_bootstrap, "e2e")
    cli(env, "db", "migrate")  # as a deployment does first: the processes refuse an older schema
    with api_and_workers(env, logs) as base:
        yield base, env


@pytest.fixture(scope="module")
def credentials(services: tuple[str, dict[str, str]]) -> Credentials:
    base, env = services
    return ready_platform(base, env, PLATFORM, [f"U{i}" for i in range(8)])


@pytest.fixture
async def client(
    services: tuple[str, dict[str, str]], credentials: Credentials
) -> AsyncIterator[SignedClient]:
    async with httpx.AsyncClient(base_url=services[0], timeout=30) as http:
        yield SignedClient(http, credentials)


async def settle(client: SignedClient, operation: dict[str, Any]) -> dict[str, Any]:
    for _ in range(300):
        answer = (await client.get(f"/strategies/operations/{operation['id']}")).json()
        if answer["status"] in ("settled", "skipped", "failed"):
            return answer
        await asyncio.sleep(0.1)
    raise AssertionError(f"operation did not finish: {answer}")


async def until(
    client: SignedClient, path: str, count: int, *, closed: bool = False
) -> dict[str, Any]:
    """The page once it lists `count` items (`closed`: and none awaits execution). Each read
    model follows its own streams: an Operation can read settled a moment before the last
    of its Executions does, so a client polls what it wants to see."""
    for _ in range(300):
        page = (await client.get(path)).json()
        items = page["message"]
        waiting = closed and any(i["status"] == "awaiting_execution" for i in items)
        if len(items) >= count and not waiting:
            return page
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never listed {count}: {page}")


async def test_enroll_to_liquidate_over_http(client: SignedClient) -> None:
    created = await client.post(
        "/strategies", {"quoted_currency": "USD", "metadata": {"platform_label": "Blue Chip"}}
    )
    assert created.status_code == 201
    strategy = created.json()
    replay = await client.post(
        "/strategies",
        {"quoted_currency": "USD", "metadata": {"platform_label": "Blue Chip"}},
        request_id=created.headers["X-REQUEST-ID"],
    )
    assert (replay.status_code, replay.json()) == (200, strategy)
    sid = strategy["id"]

    people = [
        {"participant_code": f"U{i}", "amount": "500.00", "auto_rebalance": i % 2 == 0}
        for i in range(6)
    ]
    people.append({"participant_code": "STRANGER", "amount": "500.00"})
    enroll = await client.post(
        f"/strategies/{sid}/enroll", {"allocations": ALLOCATIONS, "participants": people}
    )
    assert enroll.status_code == 202 and enroll.json()["status"] == "validating"
    done = await settle(client, enroll.json())
    assert (done["status"], done["status_reason"]) == ("settled", "partial_success")

    executions = await until(
        client, f"/strategies/executions?operation_id={done['id']}&size=10", 7, closed=True
    )
    rejected = [e for e in executions["message"] if e["status"] == "rejected"]
    assert [(e["participant_code"], e["status_reason"], e["trader_id"]) for e in rejected] == [
        ("STRANGER", "participant_ineligible", "")
    ]
    settled = [e for e in executions["message"] if e["status"] == "settled"]
    assert len(settled) == 6
    for execution in settled:
        assert {i["status"] for i in execution["instructions"]} == {"filled"}
    prices = {i["underlying_currency"]: i["price"] for e in settled for i in e["instructions"]}
    assert all(
        i["price"] == prices[i["underlying_currency"]] for e in settled for i in e["instructions"]
    )  # one price per asset for everyone

    traders = await until(client, f"/strategies/traders?strategy_id={sid}", 6)
    assert {t["participant_code"] for t in traders["message"]} == {f"U{i}" for i in range(6)}
    first = next(t for t in traders["message"] if t["participant_code"] == "U1")
    patched = await client.request(
        "PATCH", f"/strategies/traders/{first['id']}", {"auto_rebalance": True}
    )
    assert patched.status_code == 200 and patched.json()["auto_rebalance"] is True

    for path, body in (
        (
            "top-up",
            {
                "allocations": ALLOCATIONS,
                "participants": [{"participant_code": "U0", "amount": "100.00"}],
            },
        ),
        (
            "partial-sell",
            {
                "allocations": ALLOCATIONS,
                "participants": [{"participant_code": "U2", "amount": "50.00"}],
            },
        ),
        ("rebalance", {"allocations": [{"underlying_currency": "ETH", "weight": "1"}]}),
        ("liquidate", {"participants": [{"participant_code": "U3"}]}),
    ):
        answer = await client.post(f"/strategies/{sid}/{path}", body)
        assert answer.status_code == 202, answer.text
        finished = await settle(client, answer.json())
        assert finished["status"] == "settled", finished

    u3 = (await client.get(f"/strategies/traders?strategy_id={sid}&participant_code=U3")).json()[
        "message"
    ][0]
    for _ in range(100):
        if u3["status"] == "liquidated":
            break
        await asyncio.sleep(0.1)
        u3 = (await client.get(f"/strategies/traders/{u3['id']}")).json()
    assert (u3["status"], u3["positions"], u3["cash"]) == ("liquidated", {}, "0.00")

    operations = await until(client, f"/strategies/operations?strategy_id={sid}", 5)
    assert [o["type"] for o in operations["message"]] == [
        "liquidation",
        "rebalance",
        "partial_sell",
        "top_up",
        "enrollment",
    ]
    assert (
        len(
            (await client.get(f"/strategies/operations?strategy_id={sid}&type=rebalance")).json()[
                "message"
            ]
        )
        == 1
    )
    assert (await client.get(f"/strategies/operations?strategy_id={sid}&status=failed")).json()[
        "message"
    ] == []
    paged = (await client.get(f"/strategies/operations?strategy_id={sid}&size=2&page=2")).json()
    assert (paged["page"], paged["total_pages"], len(paged["message"])) == (2, 3, 2)
    # U0, U2, U4 enrolled with auto_rebalance, U1 was patched to it; U3 and U5 never had it.
    for flag, codes in (("true", {"U0", "U1", "U2", "U4"}), ("false", {"U3", "U5"})):
        path = f"/strategies/traders?strategy_id={sid}&auto_rebalance={flag}"
        filtered = (await until(client, path, len(codes)))["message"]
        assert {t["participant_code"] for t in filtered} == codes
        assert {t["auto_rebalance"] for t in filtered} == {flag == "true"}
    assert (await client.get(f"/strategies/{sid}")).json()["id"] == sid
    assert any(s["id"] == sid for s in (await client.get("/strategies")).json()["message"])


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ("no_signature", 401, "missing_credentials"),
        ("stale_timestamp", 401, "stale_timestamp"),
        ("wrong_signature", 401, "invalid_signature"),
        ("no_request_id", 400, "invalid_request_id"),
        ("weights", 400, "invalid_allocations"),
        ("amount_abc", 400, "invalid_participants"),
        ("too_many", 400, "invalid_participants"),
        ("unknown_strategy", 404, "strategy_not_found"),
        ("malformed_json", 400, "invalid_json"),
        ("huge_body", 413, "request_too_large"),
    ],
)
async def test_bad_requests_get_a_problem_document_and_write_nothing(
    client: SignedClient, change: str, status: int, code: str
) -> None:
    sid = (await client.post("/strategies", {"quoted_currency": "USD"})).json()["id"]
    body: dict[str, Any] = {"allocations": ALLOCATIONS, "participants": ONE_PARTICIPANT}
    path = f"/strategies/{sid}/top-up"
    raw: bytes | None = None
    headers_override: dict[str, str] = {}
    if change == "weights":
        body["allocations"] = [{"underlying_currency": "BTC", "weight": "0.6"}]
    elif change == "amount_abc":
        body["participants"] = [{"participant_code": "U0", "amount": "abc"}]
    elif change == "too_many":
        body["participants"] = [
            {"participant_code": f"X{i}", "amount": "1.00"} for i in range(10_001)
        ]
    elif change == "unknown_strategy":
        path = f"/strategies/{uuid.uuid4()}/top-up"
    elif change == "malformed_json":
        raw = b'{"allocations": ['
    elif change == "huge_body":
        raw = b'{"allocations": [], "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    request_id = str(uuid.uuid4())
    import json

    content = raw if raw is not None else json.dumps(body).encode()
    headers = client.headers("POST", path, content)
    headers["X-REQUEST-ID"] = request_id
    if change == "no_signature":
        headers = {"X-REQUEST-ID": request_id, "Content-Type": "application/json"}
    elif change == "stale_timestamp":
        stale = str(int(time.time()) - 120)
        from api.auth import sign

        headers |= {
            "X-SCX-TIMESTAMP": stale,
            "X-SCX-SIGNED": sign(client.credentials.secret_b64, stale, "POST", path, content),
        }
    elif change == "wrong_signature":
        headers["X-SCX-SIGNED"] = base64.b64encode(b"0" * 32).decode()
    elif change == "no_request_id":
        del headers["X-REQUEST-ID"]
    headers |= headers_override
    answer = await client.http.post(path, content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["code"] == code
    assert "Traceback" not in answer.text
    # Nothing was written: once the read models show a later Operation of the Strategy, it is
    # the only one (a list read at once could simply lag behind a write).
    valid = {"allocations": ALLOCATIONS, "participants": ONE_PARTICIPANT}
    later = await client.post(f"/strategies/{sid}/top-up", valid)
    assert later.status_code == 202, later.text
    await settle(client, later.json())
    listed = await until(client, f"/strategies/operations?strategy_id={sid}", 1)
    assert [o["id"] for o in listed["message"]] == [later.json()["id"]]


async def test_another_platforms_resources_answer_404(
    services: tuple[str, dict[str, str]], client: SignedClient
) -> None:
    base, env = services
    out = cli(env, "platform", "create", "OTHER1", "--name", "Someone else")
    fields = dict(line.split(":", 1) for line in out.strip().splitlines())
    other = Credentials(
        "OTHER1", fields["api key"].strip(), fields["secret"].strip(), fields["passphrase"].strip()
    )
    sid = (await client.post("/strategies", {"quoted_currency": "USD"})).json()["id"]
    body = {"allocations": ALLOCATIONS, "participants": ONE_PARTICIPANT}
    operation = (await client.post(f"/strategies/{sid}/top-up", body)).json()
    await settle(client, operation)
    owned = f"/strategies/executions?strategy_id={sid}"
    mine = await until(client, f"/strategies/operations?strategy_id={sid}", 1)
    assert [o["id"] for o in mine["message"]] == [operation["id"]]
    assert len((await until(client, owned, 1))["message"]) == 1  # the owner sees them
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        intruder = SignedClient(http, other)
        # Its credentials work (its own Strategy is created and read), so every 404 and
        # empty list below is about whose resources these are, not about the signature.
        own = await intruder.post("/strategies", {"quoted_currency": "USD"})
        assert own.status_code == 201, own.text
        assert (await intruder.get(f"/strategies/{own.json()['id']}")).status_code == 200
        assert (await intruder.get(f"/strategies/{sid}")).status_code == 404
        assert (await intruder.get(f"/strategies/operations/{operation['id']}")).status_code == 404
        assert (await intruder.post(f"/strategies/{sid}/top-up", body)).status_code == 404
        for path in (f"/strategies/operations?strategy_id={sid}", owned):
            answer = await intruder.get(path)
            assert (answer.status_code, answer.json()["message"]) == (200, [])
