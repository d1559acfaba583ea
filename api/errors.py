"""Every error the API returns is an RFC 9457 problem document (`application/problem+json`).

Clients switch on `code` (stable, snake_case); `type` is the same code as a URL; `errors`
names each bad field of a request so that it can be fixed in one go; `request_id` is the
correlation id of the request (also in `X-Correlation-ID` and on every log line about it).

What never reaches a client: stack traces, exception text of unexpected errors, pydantic
internals (`type`, `ctx`, `url`) and the rejected input itself. An unexpected error is logged
here with its traceback and answered with a bare 500 `internal_error`.

Routes contain no try/except: they raise `DomainError`s (or `ProblemError` for HTTP-level
refusals such as authentication) and the handlers installed by `install_error_handlers` map
them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from domain.errors import ConflictError, DomainError, InvalidRequestError, NotFoundError
from infra.logging import current_correlation_id, get_logger
from infra.transient import UNAVAILABLE_ERRORS

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from domain.errors import FieldError

log = get_logger("api.errors")

PROBLEM_TYPE_BASE = "https://portfolio-strategies.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_S = 5
MESSAGE_MAX_CHARS = 200
FIELD_MAX_CHARS = 200
DETAIL_MAX_CHARS = 500
MAX_FIELD_ERRORS = 100


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "unprocessable_content",
    429: "too_many_requests",
    503: "unavailable",
}


class ProblemFieldError(BaseModel):
    field: str = Field(examples=["participants[3].amount"])
    message: str = Field(examples=["Input should be greater than 0"])


class Problem(BaseModel):
    """RFC 9457 problem details, with our `code`, `errors` and `request_id` extensions."""

    type: str = Field(examples=[PROBLEM_TYPE_BASE + "invalid_request"])
    title: str = Field(examples=["Bad Request"])
    status: int = Field(examples=[400])
    detail: str | None = Field(default=None, examples=["The request has invalid fields."])
    code: str = Field(examples=["invalid_request"])
    errors: list[ProblemFieldError] = Field(default_factory=list)
    instance: str | None = Field(default=None, examples=["/strategies/0d1c…/enroll"])
    request_id: str | None = None


class ProblemError(Exception):
    """Raised by dependencies and routes to answer with one problem document."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        errors: Sequence[FieldError | ProblemFieldError] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = [ProblemFieldError(field=e.field, message=e.message) for e in errors]
        self.headers = headers or {}


def document_problems(openapi: dict[str, Any]) -> dict[str, Any]:
    """Make the document say which problems each route really sends, rewritten in place.

    - FastAPI documents a response `model` as `application/json`; problems are sent as
      `application/problem+json` (a fuzzer's content-type check failed on each 4xx).
    - FastAPI adds a 422 `HTTPValidationError` to every route with parameters; a bad request
      is a 400 problem here, and a 422 is only a business rule's refusal, as a problem.
    - Every route but `/time` needs the database and may answer 503 (with `Retry-After`);
      every route with a body may answer 413 before the body is read.
    """
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, path_item in openapi.get("paths", {}).items():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for response in responses.values():
                content = response.get("content", {})
                schema = content.get("application/json", {}).get("schema", {})
                if schema.get("$ref", "").endswith("/Problem"):
                    content[PROBLEM_MEDIA_TYPE] = content.pop("application/json")
            if "422" in responses:
                responses["422"] = {
                    "description": "A business rule refused the request",
                    "content": dict(problem),
                }
            if path != "/time":
                responses.setdefault(
                    "503",
                    {
                        "description": "A service the request needs is unavailable; retry "
                        "after the Retry-After seconds",
                        "content": dict(problem),
                    },
                )
            if "requestBody" in operation:
                responses.setdefault(
                    "413", {"description": "Request body too large", "content": dict(problem)}
                )
    schemas = openapi.get("components", {}).get("schemas", {})
    if (
        "HTTPValidationError" in schemas
        and "HTTPValidationError" not in orjson.dumps(openapi.get("paths", {})).decode()
    ):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return openapi


def problem_document(
    status: int,
    code: str,
    detail: str | None,
    *,
    instance: str | None,
    errors: Sequence[ProblemFieldError] = (),
) -> dict[str, Any]:
    """Every text here is cut to a bounded prefix: a message may quote the value it refuses
    (an unknown currency, a member name), and a 1 MB value was echoed back whole."""
    bounded = [
        ProblemFieldError(field=clip(e.field, FIELD_MAX_CHARS), message=clip(e.message))
        for e in errors[:MAX_FIELD_ERRORS]
    ]
    if len(errors) > MAX_FIELD_ERRORS:
        more = f"{len(errors) - MAX_FIELD_ERRORS} more errors not shown"
        bounded.append(ProblemFieldError(field="", message=more))
    return Problem(
        type=PROBLEM_TYPE_BASE + code,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=None if detail is None else clip(detail, DETAIL_MAX_CHARS),
        code=code,
        errors=bounded,
        instance=None if instance is None else clip(instance, DETAIL_MAX_CHARS),
        request_id=current_correlation_id(),
    ).model_dump()


def clip(text: str, limit: int = MESSAGE_MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def problem_response(
    status: int,
    code: str,
    detail: str | None,
    *,
    instance: str | None = None,
    errors: Sequence[ProblemFieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    body = problem_document(status, code, detail, instance=instance, errors=errors)
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to a problem document; call before adding the correlation middleware
    so that the 500 catcher runs inside it (the log line and body carry the correlation id)."""
    app.add_exception_handler(ProblemError, _api_problem)
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    for error_class in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error_class, _unavailable)
    app.add_middleware(UnhandledErrorMiddleware)


def domain_status(error: DomainError) -> int:
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, InvalidRequestError):
        return 400
    if isinstance(error, ConflictError):  # IdempotencyConflictError included
        return 409
    return 422


async def _api_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        exc.code,
        exc.detail,
        instance=request.url.path,
        errors=exc.errors,
        headers=exc.headers,
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    errors = [ProblemFieldError(field=e.field, message=e.message) for e in exc.errors]
    return problem_response(
        domain_status(exc), exc.code, exc.message, instance=request.url.path, errors=errors
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    json_errors = [error for error in raw if error.get("type") == "json_invalid"]
    if json_errors:
        reason = (json_errors[0].get("ctx") or {}).get("error", "malformed JSON")
        position = json_errors[0]["loc"][-1]
        field = ProblemFieldError(field="body", message=f"{reason} at character {position}")
        return problem_response(
            400,
            "invalid_json",
            "The request body is not valid JSON.",
            instance=request.url.path,
            errors=[field],
        )
    return problem_response(
        400,
        "invalid_request",
        "The request has invalid fields; see `errors`.",
        instance=request.url.path,
        errors=[validation_field_error(error) for error in raw],
    )


def validation_field_error(error: Any) -> ProblemFieldError:
    """One pydantic/FastAPI error as `{field, message}`: a readable path, no input echoed."""
    location = list(error.get("loc", ()))
    if location and location[0] in ("body", "query", "path", "header", "cookie"):
        location = location[1:]
    return ProblemFieldError(field=field_path(location) or "body", message=_message(error))


def field_path(location: Sequence[Any]) -> str:
    """`("participants", 3, "amount")` -> `participants[3].amount`."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _message(error: Any) -> str:
    kind = str(error.get("type", ""))
    if kind == "missing":
        return "Field required"
    if kind.startswith("uuid"):
        return "Input should be a valid UUID"  # pydantic's text quotes the bad character
    message = str(error.get("msg", "Invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(
        exc.status_code, code, detail, instance=request.url.path, headers=exc.headers
    )


async def _unavailable(request: Request, exc: Exception) -> Response:
    log.warning(
        "http.unavailable",
        path=request.url.path,
        error=type(exc).__name__,
    )
    return problem_response(
        503,
        "unavailable",
        "A service this request needs is unavailable; retry later.",
        instance=request.url.path,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class UnhandledErrorMiddleware:
    """Turn an exception no handler took into a 500 problem, logged with its traceback.

    Starlette's own `Exception` handler runs in its outermost middleware, outside ours: the
    correlation id would be gone from the log line and the response header, and the error
    would be re-raised to the server. This one sits inside the correlation middleware.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("http.unhandled_error", method=scope["method"], path=scope["path"])
            if started:
                raise  # the client already has part of an answer; the server closes it
            response = problem_response(
                500,
                "internal_error",
                "An unexpected error occurred; it has been logged under this request_id.",
                instance=scope["path"],
            )
            await response(scope, receive, send)
