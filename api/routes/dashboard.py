"""The live operator dashboard at `/dashboard` (issue 20): server-rendered HTML behind the
admin token, refreshed in place every second by a small script of ours (`static/dashboard.js`
fetches `/dashboard/live`, the page's sections, and swaps those that changed).

The admin token is proven once, on a login form, for a signed session cookie
(`api.dashboard_session`); the forms that change something (redeliver a dead letter, log
out) carry the session's CSRF token. These pages are for people, not clients: they are left
out of the OpenAPI document.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs
from uuid import UUID

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse

from api import dashboard_session as session
from api.pages import page
from api.routes.webhooks import get_store
from domain.codes import code_problem
from infra.postgres.webhooks_store import WebhookStore

if TYPE_CHECKING:
    from api.dashboard_data import Snapshot
    from api.deps import Pipeline

router = APIRouter(include_in_schema=False)

#: Milliseconds between two refreshes of the page.
REFRESH_MS = 1000
#: A login or redeliver form is a few hundred bytes; anything longer is not ours.
MAX_FORM_BYTES = 4096


def _admin_token(request: Request) -> str | None:
    token = request.app.state.settings.admin_token
    return None if token is None else str(token.get_secret_value())


def _cookie(request: Request, token: str) -> str | None:
    """The request's session cookie when it is valid, else None."""
    cookie = request.cookies.get(session.COOKIE)
    return cookie if session.valid(token, cookie, time.time()) else None


def _off() -> HTMLResponse:
    return page(
        "message.html",
        status.HTTP_403_FORBIDDEN,
        title="Dashboard off",
        message="The admin API is off: set STRATEGIES_ADMIN_TOKEN to use the dashboard.",
    )


def _unavailable() -> HTMLResponse:
    return page(
        "message.html",
        status.HTTP_503_SERVICE_UNAVAILABLE,
        title="Engine unavailable",
        message="The engine could not start (see /health); try again shortly.",
        headers={"Retry-After": "5"},
    )


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the last value of each); {} for anything else."""
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[-1] for name, values in fields.items()}


async def _snapshot(request: Request) -> Snapshot | None:
    engine: Pipeline | None = request.app.state.engine
    return None if engine is None else await engine.operator_view.snapshot()


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    token = _admin_token(request)
    if token is None:
        return _off()
    cookie = _cookie(request, token)
    if cookie is None:
        return page("login.html", title="Operator dashboard", wrong=False)
    snapshot = await _snapshot(request)
    if snapshot is None:
        return _unavailable()
    return page(
        "dashboard.html",
        title="Operator dashboard",
        snapshot=snapshot,
        csrf=session.csrf_token(token, cookie),
        refresh_ms=REFRESH_MS,
    )


@router.get("/dashboard/live", response_class=HTMLResponse)
async def live(request: Request) -> Response:
    """The page's sections as they are now (the script swaps them in)."""
    token = _admin_token(request)
    if token is None:
        return _off()
    cookie = _cookie(request, token)
    if cookie is None:  # expired: the script reloads the page, which asks to log in
        return page("message.html", status.HTTP_401_UNAUTHORIZED, title="Log in", message="")
    snapshot = await _snapshot(request)
    if snapshot is None:
        return _unavailable()
    csrf = session.csrf_token(token, cookie)
    return page("live.html", snapshot=snapshot, csrf=csrf)


@router.post("/dashboard/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    token = _admin_token(request)
    if token is None:
        return _off()
    sent = (await _form(request)).get("token", "")
    if not session.token_matches(token, sent):
        return page(
            "login.html", status.HTTP_401_UNAUTHORIZED, title="Operator dashboard", wrong=True
        )
    answer = RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER)
    answer.set_cookie(
        session.COOKIE,
        session.issue(token, time.time()),
        max_age=session.LIFETIME_S,
        path=session.PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return answer


@router.post("/dashboard/logout", response_class=HTMLResponse)
async def logout(request: Request) -> Response:
    form = await _checked_form(request)
    if isinstance(form, HTMLResponse):
        return form
    answer = RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER)
    answer.delete_cookie(session.COOKIE, path=session.PATH, httponly=True, samesite="strict")
    return answer


@router.post("/dashboard/redeliver", response_class=HTMLResponse)
async def redeliver(request: Request) -> Response:
    """Send a dead letter again: the admin API's redeliver, from a button."""
    form = await _checked_form(request)
    if isinstance(form, HTMLResponse):
        return form
    try:
        platform_id = form["platform_id"]
        if code_problem(platform_id) is not None:  # as strict as the admin API's path
            raise ValueError(platform_id)
        subscription_id = UUID(form["subscription_id"])
        delivery_id = UUID(form["delivery_id"])
    except (KeyError, ValueError):
        return _message(status.HTTP_400_BAD_REQUEST, "Not a dead letter's form.")
    store: WebhookStore = await get_store(request, request.app.state.db_pool)
    if await store.redeliver(platform_id, subscription_id, delivery_id) is None:
        return _message(
            status.HTTP_409_CONFLICT, f"Delivery {delivery_id} is not a dead letter (any more)."
        )
    return RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER)


async def _checked_form(request: Request) -> dict[str, str] | HTMLResponse:
    """The posted form of a request with a valid session and that session's CSRF token;
    otherwise the page refusing it."""
    token = _admin_token(request)
    if token is None:
        return _off()
    cookie = _cookie(request, token)
    if cookie is None:
        return _message(status.HTTP_401_UNAUTHORIZED, "Your session ended: log in again.")
    form = await _form(request)
    if not session.csrf_matches(token, cookie, form.get("csrf", "")):
        return _message(status.HTTP_403_FORBIDDEN, "This form is not from your session.")
    return form


def _message(code: int, message: str) -> HTMLResponse:
    return page("message.html", code, title="Dashboard", message=message)
