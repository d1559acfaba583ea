"""Signed requests, size limits, problems and PATCH idempotency through a real FastAPI app
on a real PostgreSQL: the dependencies as the routes will use them."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api import replay_guard
from api.auth import PlatformDep, sign
from api.errors import install_error_handlers
from api.idempotency import RequestIdDep
from api.limits import BodySizeLimitMiddleware
from api.main import CorrelationIdMiddleware
from infra.logging import configure_logging
from infra.postgres import platforms
from infra.postgres.platforms import Credentials, create_platform, disable_platform, enable_platform
from infra.postgres.secrets_box import SecretBox
from infra.settings import LogFormat, Settings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.integration

BOX = SecretBox(b"k" * 32)
MAX_BODY = 64 * 1024


class Note(BaseModel):
    text: str


class TraderPatch(BaseModel):
    auto_rebalance: bool


def build_app(pool: asyncpg.Pool) -> FastAPI:
    app = FastAPI()
    app.state.db_pool = pool
    app.state.secret_box = BOX

    @app.get("/whoami")
    async def whoami(platform: PlatformDep) -> dict[str, str]:
        return {"platform_id": platform.platform_id}

    @app.post("/notes")
    async def add_note(platform: PlatformDep, note: Note) -> dict[str, Any]:
        return {"platform_id": platform.platform_id, "length": len(note.text)}

    @app.patch("/traders/{trader_id}")
    async def patch_trader(
        trader_id: str,
        change: TraderPatch,
        platform: PlatformDep,
        request_id: RequestIdDep,
    ) -> JSONResponse:
        # Replays and conflicts are decided on the write side (tests of the real route); this
        # stub only shows what authentication and X-REQUEST-ID validation let through.
        body = {"trader_id": trader_id, "auto_rebalance": change.auto_rebalance}
        return JSONResponse(body, headers={"X-REQUEST-ID": str(request_id)})

    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=MAX_BODY)
    app.add_middleware(CorrelationIdMiddleware)
    return app


@pytest.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=12)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def credentials(pool: asyncpg.Pool) -> Credentials:
    return await create_platform(pool, "PLAT01", "Acme Wallet", BOX)


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(pool))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def signed(
    credentials: Credentials,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    key_as_text: bool = False,
    overrides: dict[str, str] | None = None,
) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    secret = credentials.secret_b64.encode() if key_as_text else credentials.secret_b64
    headers = {
        "X-SCX-API-KEY": credentials.api_key,
        "X-SCX-SIGNED": sign(secret, timestamp, method, path, body),
        "X-SCX-TIMESTAMP": str(timestamp),
        "X-SCX-PASSPHRASE": credentials.passphrase,
        "Content-Type": "application/json",
    }
    headers.update(overrides or {})
    return headers


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"].startswith("SCX-HMAC-SHA256")
    return body


# Signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("key_as_text", [False, True])
async def test_a_signed_get_with_a_query_is_accepted(
    client: httpx.AsyncClient, credentials: Credentials, key_as_text: bool
) -> None:
    path = "/whoami?page=2&size=10"
    response = await client.get(
        path, headers=signed(credentials, "GET", path, key_as_text=key_as_text)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"platform_id": "PLAT01"}


async def test_a_signed_post_covers_the_raw_body(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    body = b'{"text":  "hello"}'
    ok = await client.post(
        "/notes", content=body, headers=signed(credentials, "POST", "/notes", body)
    )
    tampered = await client.post(
        "/notes",
        content=b'{"text": "hello"}',
        headers=signed(credentials, "POST", "/notes", body),
    )
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"platform_id": "PLAT01", "length": 5}
    assert_refused(tampered, 401, "invalid_signature")


async def test_missing_headers_are_each_named(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    body = assert_refused(await client.get("/whoami"), 401, "missing_credentials")
    assert {error["field"] for error in body["errors"]} == {
        "X-SCX-API-KEY",
        "X-SCX-SIGNED",
        "X-SCX-TIMESTAMP",
        "X-SCX-PASSPHRASE",
    }
    headers = signed(credentials, "GET", "/whoami")
    del headers["X-SCX-PASSPHRASE"]
    body = assert_refused(await client.get("/whoami", headers=headers), 401, "missing_credentials")
    assert [error["field"] for error in body["errors"]] == ["X-SCX-PASSPHRASE"]


@pytest.mark.parametrize(
    ("overrides", "skew", "code"),
    [
        ({"X-SCX-TIMESTAMP": "yesterday"}, 0, "invalid_timestamp"),
        ({"X-SCX-TIMESTAMP": "1714445704000.0"}, 0, "invalid_timestamp"),
        ({}, -120, "stale_timestamp"),
        ({}, 120, "stale_timestamp"),
        ({"X-SCX-API-KEY": "0" * 32}, 0, "unknown_api_key"),
        ({"X-SCX-SIGNED": base64.b64encode(b"x" * 32).decode()}, 0, "invalid_signature"),
        ({"X-SCX-SIGNED": "garbage"}, 0, "invalid_signature"),
        ({"X-SCX-PASSPHRASE": "not-the-passphrase"}, 0, "invalid_passphrase"),
    ],
)
async def test_bad_credentials_are_refused_with_their_code(
    client: httpx.AsyncClient,
    credentials: Credentials,
    overrides: dict[str, str],
    skew: int,
    code: str,
) -> None:
    headers = signed(
        credentials, "GET", "/whoami", timestamp=int(time.time()) + skew, overrides=overrides
    )
    assert_refused(await client.get("/whoami", headers=headers), 401, code)


async def test_a_signature_without_the_query_string_is_refused(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    headers = signed(credentials, "GET", "/whoami")
    response = await client.get("/whoami?page=2", headers=headers)
    assert_refused(response, 401, "invalid_signature")


async def test_a_get_signed_with_an_empty_body_instead_of_braces_is_refused(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    headers = signed(credentials, "GET", "/whoami")
    timestamp = headers["X-SCX-TIMESTAMP"]
    payload_without_braces = f"{timestamp}GET/whoami".encode()
    wrong = hmac.digest(
        base64.b64decode(credentials.secret_b64), payload_without_braces, hashlib.sha256
    )
    headers["X-SCX-SIGNED"] = base64.b64encode(wrong).decode()
    assert_refused(await client.get("/whoami", headers=headers), 401, "invalid_signature")


async def test_a_disabled_platform_is_forbidden_until_enabled(
    client: httpx.AsyncClient, pool: asyncpg.Pool, credentials: Credentials
) -> None:
    await disable_platform(pool, "PLAT01")
    forbidden = await client.get("/whoami", headers=signed(credentials, "GET", "/whoami"))
    await enable_platform(pool, "PLAT01")
    allowed = await client.get("/whoami", headers=signed(credentials, "GET", "/whoami"))

    assert_refused(forbidden, 403, "platform_disabled")
    assert allowed.status_code == 200


async def test_a_disabled_platform_is_told_only_to_a_caller_who_proves_the_key(
    client: httpx.AsyncClient, pool: asyncpg.Pool, credentials: Credentials
) -> None:
    await disable_platform(pool, "PLAT01")
    headers = signed(credentials, "GET", "/whoami", overrides={"X-SCX-PASSPHRASE": "guess"})
    assert_refused(await client.get("/whoami", headers=headers), 401, "invalid_passphrase")


async def test_a_rotated_key_stops_working(
    client: httpx.AsyncClient, pool: asyncpg.Pool, credentials: Credentials
) -> None:
    await client.get("/whoami", headers=signed(credentials, "GET", "/whoami"))  # cached
    new = await platforms.rotate_key(pool, "PLAT01", BOX)
    old_response = await client.get("/whoami", headers=signed(credentials, "GET", "/whoami"))
    new_response = await client.get("/whoami", headers=signed(new, "GET", "/whoami"))
    assert_refused(old_response, 401, "unknown_api_key")
    assert new_response.status_code == 200


async def test_no_secret_signature_or_passphrase_is_logged(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging(
        Settings(log_format=LogFormat.JSON, log_level="DEBUG"), stream=buffer, force=True
    )
    try:
        good = signed(credentials, "GET", "/whoami")
        await client.get("/whoami", headers=good)
        await client.get("/whoami", headers={**good, "X-SCX-PASSPHRASE": "wrong-passphrase"})
        await client.get("/whoami", headers={**good, "X-SCX-SIGNED": "forged-signature"})
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    logged = buffer.getvalue()
    assert "auth.refused" in logged
    for clear in (
        credentials.secret_b64,
        credentials.passphrase,
        good["X-SCX-SIGNED"],
        "wrong-passphrase",
        "forged-signature",
    ):
        assert clear not in logged


# Limits and problems -------------------------------------------------------------------


async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    body = b'{"text": "' + b"x" * MAX_BODY + b'"}'
    response = await client.post(
        "/notes", content=body, headers=signed(credentials, "POST", "/notes", body)
    )
    assert_refused(response, 413, "request_too_large")


async def test_a_chunked_body_over_the_limit_is_refused_while_streaming(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    chunks = [b'{"text": "'] + [b"x" * 8192] * (MAX_BODY // 8192 + 1) + [b'"}']

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    body = b"".join(chunks)
    response = await client.post(
        "/notes", content=stream(), headers=signed(credentials, "POST", "/notes", body)
    )
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, "request_too_large")


async def test_an_oversized_body_read_by_the_signature_check_is_a_413_not_a_500(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    async def stream() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 8192 + 2):
            yield b"x" * 8192

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging(Settings(log_format=LogFormat.JSON), stream=buffer, force=True)
    try:
        headers = signed(credentials, "GET", "/whoami")
        response = await client.request("GET", "/whoami", content=stream(), headers=headers)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert_refused(response, 413, "request_too_large")
    assert "http.unhandled_error" not in buffer.getvalue()


async def test_a_chunked_body_under_the_limit_is_fine(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    chunks = [b'{"text": "', b"x" * 1000, b'"}']

    async def stream() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    body = b"".join(chunks)
    response = await client.post(
        "/notes", content=stream(), headers=signed(credentials, "POST", "/notes", body)
    )
    assert response.status_code == 200, response.text


async def test_malformed_json_is_a_400_problem(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    body = b'{"text": '
    response = await client.post(
        "/notes", content=body, headers=signed(credentials, "POST", "/notes", body)
    )
    assert_refused(response, 400, "invalid_json")


# PATCH idempotency over HTTP -----------------------------------------------------------


def patch_headers(
    credentials: Credentials, path: str, body: bytes, request_id: str
) -> dict[str, str]:
    return {**signed(credentials, "PATCH", path, body), "X-REQUEST-ID": request_id}


@pytest.mark.parametrize(
    "request_id",
    # Fixed values, not fresh uuids: test ids must be the same in every collecting process.
    [
        None,
        "",
        "not-a-uuid",
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",  # a v1
        "a4b3201033494698a49dc789d157e7f5",  # a v4 without dashes
        "{516fb9e1-8337-4b27-904f-2725b5ac8b45}",  # a v4 in braces
    ],
)
async def test_a_mutation_needs_a_uuid_v4_request_id(
    client: httpx.AsyncClient, credentials: Credentials, request_id: str | None
) -> None:
    path, body = "/traders/t-1", b'{"auto_rebalance": true}'
    headers = signed(credentials, "PATCH", path, body)
    if request_id is not None:
        headers["X-REQUEST-ID"] = request_id
    response = await client.patch(path, content=body, headers=headers)
    problem = assert_refused(response, 400, "invalid_request_id")
    assert problem["errors"] == [{"field": "X-REQUEST-ID", "message": "Must be a UUID v4"}]


async def test_a_mutations_signature_is_good_for_one_request_id_only(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    path, body = "/notes", b'{"text": "hello"}'
    headers = signed(credentials, "POST", path, body, overrides={"X-REQUEST-ID": _v4()})
    first = await client.post(path, content=body, headers=headers)
    retry = await client.post(path, content=body, headers=headers)
    replayed = await client.post(path, content=body, headers={**headers, "X-REQUEST-ID": _v4()})
    # The retry's request id in upper case is the same id.
    shouted = {**headers, "X-REQUEST-ID": headers["X-REQUEST-ID"].upper()}
    retried_again = await client.post(path, content=body, headers=shouted)
    resigned = await client.post(
        path,
        content=body,
        headers=signed(
            credentials,
            "POST",
            path,
            body,
            timestamp=int(headers["X-SCX-TIMESTAMP"]) + 1,
            overrides={"X-REQUEST-ID": _v4()},
        ),
    )

    assert first.status_code == retry.status_code == retried_again.status_code == 200
    assert_refused(replayed, 401, "replayed_signature")
    assert resigned.status_code == 200, resigned.text


async def test_a_reads_signature_may_be_used_again(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    headers = signed(credentials, "GET", "/whoami")
    answers = [await client.get("/whoami", headers=headers) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]


async def test_of_simultaneous_uses_of_a_signature_one_request_id_wins(
    pool: asyncpg.Pool,
) -> None:
    request_ids = [_v4() for _ in range(10)]
    outcomes = await asyncio.gather(
        *(replay_guard.first_use(pool, "key-1", "c2lnbmF0dXJl", rid) for rid in request_ids)
    )
    assert outcomes.count(True) == 1
    assert (
        await replay_guard.first_use(pool, "key-1", "c2lnbmF0dXJl", request_ids[0]) is (outcomes[0])
    )
    assert await replay_guard.first_use(pool, "key-2", "c2lnbmF0dXJl", _v4())  # per key


async def test_signatures_past_their_window_are_forgotten(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await replay_guard.first_use(pool, "key-old", "b2xk", _v4())
    await replay_guard.first_use(pool, "key-new", "bmV3", _v4())
    async with pool.acquire() as connection:
        await connection.execute(
            """UPDATE api_signatures_seen SET seen_at = now() - interval '181 seconds'
               WHERE api_key = 'key-old'"""
        )
    monkeypatch.setattr(replay_guard, "_last_purge", 0.0)
    await replay_guard.first_use(pool, "key-any", "YW55", _v4())
    async with pool.acquire() as connection:
        kept = await connection.fetch("SELECT api_key FROM api_signatures_seen ORDER BY 1")
    assert [row["api_key"] for row in kept] == ["key-any", "key-new"]


def _v4() -> str:
    return str(uuid.uuid4())
