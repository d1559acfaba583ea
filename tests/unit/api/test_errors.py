"""The error model: every failure is an RFC 9457 problem with a stable code, nothing leaks."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
import httpx
import psycopg
import pytest
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

from api.errors import ProblemError, install_error_handlers
from api.main import CorrelationIdMiddleware
from domain.errors import (
    AllocationInvalidError,
    DomainError,
    FieldError,
    IdempotencyConflictError,
    TraderHeldError,
    TraderNotFoundError,
)
from tests.log_capture import json_log_lines

LEAKY = "password=hunter2 at /srv/app/secret.py"


class Participant(BaseModel):
    participant_code: str
    amount: Decimal = Field(gt=0)


class Enroll(BaseModel):
    participants: list[Participant]
    auto_rebalance: bool = True


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/raise/{kind}")
    async def raise_(kind: str) -> None:
        errors: dict[str, Exception] = {
            "not-found": TraderNotFoundError("trader 42 does not exist"),
            "invalid": AllocationInvalidError(
                "weights must add up to 1",
                errors=(FieldError("allocations[1].weight", "must be at most 1"),),
            ),
            "held": TraderHeldError("trader is held by another operation"),
            "idempotency": IdempotencyConflictError("request id reused"),
            "domain": DomainError("some other rule"),
            "problem": ProblemError(401, "invalid_signature", "bad", headers={"X-Why": "sig"}),
            "http": HTTPException(418, "I am a teapot"),
            "unexpected": RuntimeError(LEAKY),
            "asyncpg-lost": asyncpg.ConnectionDoesNotExistError(LEAKY),
            "asyncpg-busy": asyncpg.TooManyConnectionsError(LEAKY),
            "psycopg": psycopg.OperationalError(LEAKY),
            "refused": ConnectionRefusedError(LEAKY),
            "pool-timeout": TimeoutError(),
        }
        raise errors[kind]

    @app.post("/enroll")
    async def enroll(body: Enroll, page: Annotated[int, Query(ge=1)] = 1) -> dict[str, int]:
        return {"count": len(body.participants), "page": page}

    install_error_handlers(app)
    app.add_middleware(CorrelationIdMiddleware)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    with json_log_lines() as buffer:
        yield buffer


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://portfolio-strategies.dev/problems/{code}"
    assert body["title"]
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-correlation-id"]
    return body


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("not-found", 404, "trader_not_found"),
        ("invalid", 400, "invalid_allocations"),
        ("held", 409, "concurrent_hold"),
        ("idempotency", 409, "idempotency_conflict"),
        ("domain", 422, "domain_error"),
    ],
)
async def test_domain_errors_map_to_their_status_with_their_code(
    client: httpx.AsyncClient, kind: str, status: int, code: str
) -> None:
    body = assert_problem(await client.get(f"/raise/{kind}"), status, code)
    assert body["detail"]


async def test_domain_field_errors_are_listed(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/raise/invalid"), 400, "invalid_allocations")
    assert body["errors"] == [{"field": "allocations[1].weight", "message": "must be at most 1"}]
    assert body["detail"] == "weights must add up to 1"


async def test_problem_errors_keep_their_status_and_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/raise/problem")
    assert_problem(response, 401, "invalid_signature")
    assert response.headers["x-why"] == "sig"


async def test_http_exceptions_become_problems(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/raise/http"), 418, "http_418")
    assert body["detail"] == "I am a teapot"
    assert_problem(await client.get("/nowhere"), 404, "not_found")
    response = await client.delete("/enroll")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_validation_names_each_bad_field_without_echoing_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/enroll?page=0",
        json={
            "participants": [
                {"participant_code": "A", "amount": "1"},
                {"participant_code": "B", "amount": "-5.25"},
                {"amount": "1"},
            ],
            "auto_rebalance": "sometimes-hunter2",
        },
    )
    body = assert_problem(response, 400, "invalid_request")
    fields = {error["field"]: error["message"] for error in body["errors"]}
    assert set(fields) == {
        "participants[1].amount",
        "participants[2].participant_code",
        "auto_rebalance",
        "page",
    }
    assert fields["participants[2].participant_code"] == "Field required"
    assert all(set(error) == {"field", "message"} for error in body["errors"])
    assert "hunter2" not in response.text
    assert "-5.25" not in response.text


async def test_a_missing_body_is_reported_as_the_body(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.post("/enroll"), 400, "invalid_request")
    assert [error["field"] for error in body["errors"]] == ["body"]


async def test_malformed_json_is_invalid_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/enroll", content=b'{"participants": [', headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 400, "invalid_json")
    assert body["errors"][0]["field"] == "body"


async def test_unexpected_errors_are_a_bare_500_logged_with_the_correlation_id(
    client: httpx.AsyncClient, log_buffer: io.StringIO
) -> None:
    response = await client.get("/raise/unexpected")
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text
    logged = [json.loads(line) for line in log_buffer.getvalue().splitlines()]
    failure = next(line for line in logged if line["event"] == "http.unhandled_error")
    assert failure["correlation_id"] == body["request_id"]
    assert "RuntimeError" in json.dumps(failure)  # the server side keeps the traceback
    assert failure["level"] == "error"


@pytest.mark.parametrize(
    "kind", ["asyncpg-lost", "asyncpg-busy", "psycopg", "refused", "pool-timeout"]
)
async def test_database_unavailability_is_a_503_with_retry_after(
    client: httpx.AsyncClient, kind: str
) -> None:
    response = await client.get(f"/raise/{kind}")
    assert_problem(response, 503, "unavailable")
    assert int(response.headers["retry-after"]) > 0
    assert "hunter2" not in response.text
