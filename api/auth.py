"""Request signing (spec §7.2): who is calling, proven on every request.

A client sends four headers: `X-SCX-API-KEY` (public), `X-SCX-TIMESTAMP` (Unix seconds),
`X-SCX-PASSPHRASE`, and `X-SCX-SIGNED`, the base64 HMAC-SHA256 of

    timestamp + METHOD + path-with-query + body

keyed by the key's secret. The body is the raw request body, or `{}` for a GET, HEAD or
DELETE, which may not carry one (`api.strict_requests`: the text has no separators, so a body
on a GET could stand for a query string). The secret is issued as base64; zerohash's sample
code decodes it and uses the 32 bytes as key, some clients use the base64 text itself: both
are accepted.

The checks run cheapest first and each failure has its own `code`, so a client can tell a
clock problem from a key problem: missing headers, a timestamp that is not an integer or is
more than 60 s away from ours, an unknown (or revoked) key, a wrong signature, a wrong
passphrase (401); a disabled platform is a 403, told only to a caller that proved who it is.
A mutation's signature is good for one X-REQUEST-ID (`api.replay_guard`): sent again with
another, it is a 401 `replayed_signature`. Once the signature is proven, the request counts
against its key's and its platform's budgets (`api.rate_limits`, 429 `rate_limited`), and
the passphrase is checked within bounds (`api.passphrase_check`).
Secrets, signatures and passphrases are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.routing import APIRoute

from api import replay_guard, strict_requests
from api.abuse_limits import passphrase_check, request_budgets
from api.errors import ProblemError
from api.strict_requests import read_json_body, refuse_body_on_bodyless, refuse_unknown_query
from domain.errors import FieldError
from infra.logging import get_logger
from infra.postgres.platforms import KeyCache, find_key, key_cache

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from starlette.responses import Response

log = get_logger("api.auth")

SIGNATURE_WINDOW_S = 60
EMPTY_BODY = b"{}"
BODYLESS_METHODS = strict_requests.BODYLESS_METHODS
HEADERS = ("X-SCX-API-KEY", "X-SCX-SIGNED", "X-SCX-TIMESTAMP", "X-SCX-PASSPHRASE")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Issued keys are 32 hex digits (infra.postgres.platforms). A value that is not short
# printable ASCII cannot be one and is refused without a query: PostgreSQL text cannot
# hold a NUL, and such a key made the lookup fail with a 500.
_API_KEY = re.compile(r"[\x21-\x7e]{1,128}")
_CHALLENGE = {"WWW-Authenticate": 'SCX-HMAC-SHA256 realm="portfolio-strategies"'}


@dataclass(frozen=True)
class AuthenticatedPlatform:
    platform_id: str
    api_key: str


def signing_payload(
    timestamp: int | str, method: str, path_with_query: str, body: bytes | str | None
) -> bytes:
    """The bytes that are signed; `{}` stands in for the empty body of a GET or DELETE."""
    if isinstance(body, str):
        body = body.encode()
    method = method.upper()
    if not body and method in BODYLESS_METHODS:
        body = EMPTY_BODY
    return f"{timestamp}{method}{path_with_query}".encode() + (body or b"")


def sign(
    secret: bytes | str,
    timestamp: int | str,
    method: str,
    path_with_query: str,
    body: bytes | str | None = None,
) -> str:
    """`X-SCX-SIGNED` for a request.

    `secret` as `str` is the base64 text the key was issued with and is decoded first, as
    zerohash's sample code does; as `bytes` it is the HMAC key itself (pass
    `secret_b64.encode()` to sign with the text as key, which the server also accepts).
    """
    key = base64.b64decode(secret, validate=True) if isinstance(secret, str) else secret
    payload = signing_payload(timestamp, method, path_with_query, body)
    return base64.b64encode(hmac.digest(key, payload, hashlib.sha256)).decode("ascii")


def signature_matches(secret: bytes, signature: str, payload: bytes) -> bool:
    """Both key forms are computed and compared in constant time, whichever matches."""
    provided = signature.strip().encode()
    matched = False
    for key in (secret, base64.b64encode(secret)):
        expected = base64.b64encode(hmac.digest(key, payload, hashlib.sha256))
        matched |= hmac.compare_digest(expected, provided)
    return matched


def parse_timestamp(value: str) -> int:
    if not _TIMESTAMP.fullmatch(value.strip()):
        raise _unauthorized("invalid_timestamp", "X-SCX-TIMESTAMP must be Unix time in seconds.")
    return int(value)


def check_freshness(timestamp: int, now: float, window_s: int = SIGNATURE_WINDOW_S) -> None:
    """Within `window_s` seconds of our clock, either side (the boundary itself is fine)."""
    if abs(now - timestamp) > window_s:
        raise _unauthorized(
            "stale_timestamp",
            f"X-SCX-TIMESTAMP is more than {window_s} s away from the server time "
            f"({int(now)}); check the client clock.",
        )


def path_with_query(request: Request) -> str:
    """The route as the client wrote it (still percent-encoded), with its query string."""
    scope = request.scope
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


async def authenticated_platform(
    request: Request,
    api_key: Annotated[
        str | None, Header(alias="X-SCX-API-KEY", description="Public api key.")
    ] = None,
    signature: Annotated[
        str | None,
        Header(
            alias="X-SCX-SIGNED",
            description="base64 HMAC-SHA256 of timestamp + METHOD + path?query + body "
            "('{}' for a GET or DELETE without body), keyed by the api secret.",
        ),
    ] = None,
    timestamp: Annotated[
        str | None,
        Header(alias="X-SCX-TIMESTAMP", description="Unix seconds, within 60 s of server time."),
    ] = None,
    passphrase: Annotated[
        str | None, Header(alias="X-SCX-PASSPHRASE", description="Passphrase of the api key.")
    ] = None,
) -> AuthenticatedPlatform:
    """FastAPI dependency: the platform whose key signed this request, or a 401/403."""
    checked = getattr(request.state, "platform", None)
    if isinstance(checked, AuthenticatedPlatform):
        return checked  # a SignedRoute checked it before the body was parsed
    try:
        platform = await _authenticate(request, api_key, signature, timestamp, passphrase)
    except ProblemError as refusal:
        if refusal.status in (401, 403, 429):  # not a 413 raised while reading the body
            log.info(
                "auth.refused", code=refusal.code, method=request.method, path=request.url.path
            )
        raise
    request.state.platform = platform
    return platform


PlatformDep = Annotated[AuthenticatedPlatform, Depends(authenticated_platform)]


class CallerFirstRoute(APIRoute):
    """A route that checks who is calling before FastAPI reads the body.

    FastAPI parses a JSON body before it solves any dependency, so a caller who cannot
    authenticate would be told about its request (400 `invalid_json`) instead of being
    refused (401). Subclasses say how the caller is checked; the dependency doing the same
    check later finds the result and does not repeat it. Then the query and the body are
    read strictly (`api.strict_requests`), for every route of this class alike.
    """

    async def check_caller(self, request: Request) -> None:
        raise NotImplementedError

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def caller_first(request: Request) -> Response:
            await self.check_caller(request)
            await refuse_body_on_bodyless(request)
            refuse_unknown_query(request, self)
            if self.body_field is not None:
                await read_json_body(request)
            return await handle(request)

        return caller_first


class SignedRoute(CallerFirstRoute):
    """The routes of the platform API (`APIRouter(route_class=SignedRoute)`)."""

    #: A POST that writes nothing (a preview): its signature is not tied to an X-REQUEST-ID
    #: (`api.replay_guard`), since sending it again changes nothing, as a repeated GET; and,
    #: like a GET, it names only the query parameters it documents.
    writes_nothing: bool = False

    async def check_caller(self, request: Request) -> None:
        if authenticated_platform in request.app.dependency_overrides:
            return  # the app replaced the check (tests of a route's own behaviour)
        request.state.writes_nothing = self.writes_nothing
        headers = request.headers
        await authenticated_platform(
            request,
            api_key=headers.get("X-SCX-API-KEY"),
            signature=headers.get("X-SCX-SIGNED"),
            timestamp=headers.get("X-SCX-TIMESTAMP"),
            passphrase=headers.get("X-SCX-PASSPHRASE"),
        )


async def _authenticate(
    request: Request,
    api_key: str | None,
    signature: str | None,
    timestamp: str | None,
    passphrase: str | None,
) -> AuthenticatedPlatform:
    values = dict(zip(HEADERS, (api_key, signature, timestamp, passphrase), strict=True))
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise _unauthorized(
            "missing_credentials",
            "The request must carry the four X-SCX-* signing headers.",
            errors=[FieldError(name, "Header required") for name in missing],
        )
    assert api_key and signature and timestamp and passphrase
    check_freshness(parse_timestamp(timestamp), time.time())
    state = request.app.state
    cache: KeyCache = getattr(state, "key_cache", key_cache)
    record = None
    if _API_KEY.fullmatch(api_key):
        record = await find_key(state.db_pool, api_key, state.secret_box, cache=cache)
    if record is None:
        raise _unauthorized("unknown_api_key", "X-SCX-API-KEY is not an active key.")
    await refuse_body_on_bodyless(request)  # before the body can stand for a query string
    payload = signing_payload(
        timestamp.strip(), request.method, path_with_query(request), await request.body()
    )
    if not signature_matches(record.secret, signature, payload):
        raise _unauthorized(
            "invalid_signature",
            "X-SCX-SIGNED does not match: sign timestamp + METHOD + path with query + body "
            "('{}' for a GET or DELETE without body) with HMAC-SHA256, then base64.",
        )
    request_budgets(state).admit(record.api_key, record.platform_id)
    if not await passphrase_check(state).matches(record, passphrase):
        raise _unauthorized("invalid_passphrase", "X-SCX-PASSPHRASE does not match the key.")
    if record.status != "active":
        raise ProblemError(403, "platform_disabled", "This platform is disabled.")
    guarded = request.method in replay_guard.GUARDED_METHODS
    if guarded and getattr(request.state, "writes_nothing", False) is True:
        guarded = False  # a preview: sent again, it changes nothing (`SignedRoute`)
    if guarded and not await replay_guard.first_use(
        state.db_pool, record.api_key, signature, request.headers.get("X-REQUEST-ID", "")
    ):
        raise _unauthorized(
            "replayed_signature",
            "This signature was already used with another X-REQUEST-ID. Resend a signature "
            "only to retry the same call (same X-REQUEST-ID); a new request needs its own "
            "signature, so one identical to an earlier one needs another X-SCX-TIMESTAMP.",
        )
    return AuthenticatedPlatform(platform_id=record.platform_id, api_key=record.api_key)


def _unauthorized(
    code: str, detail: str, *, errors: list[FieldError] | None = None
) -> ProblemError:
    return ProblemError(401, code, detail, errors=errors or (), headers=dict(_CHALLENGE))
