"""What a route reads besides its path is read strictly, once the caller is known
(`api.auth.CallerFirstRoute` calls these checks for every platform and admin route).

- A GET or DELETE carries no body: a 400 `body_not_allowed`. The signed text joins
  timestamp, method, path with query and body without separators, so a body let a captured
  signature of `GET /strategies/traders?participant_code=P1` be replayed as
  `GET /strategies/traders` with the body `?participant_code=P1{}`, a wider read. The
  signature check itself refuses such a body before it computes anything from it
  (`api.auth`); the route class refuses it on the admin routes too. Such methods sign `{}`
  (spec §7.2).

- A body is `application/json` (or `+json`; a `charset`, if any, `utf-8`), else a 415
  `unsupported_media_type`; its text follows `domain.json_text` (UTF-8 without a BOM, no
  repeated member, no NaN), the rule the command topic applies too. The parsed value is
  handed to FastAPI, which would otherwise parse the body again with the lenient `json`.
- A GET (or a POST that writes nothing, a preview) names only the query parameters its
  route documents: an unknown one was ignored
  silently, so a misspelt filter (`statu=failed`) answered everything. It is a 400
  `unknown_filter` naming each.
"""

from __future__ import annotations

from email.message import Message
from typing import TYPE_CHECKING

from api.errors import ProblemError, ProblemFieldError
from domain.json_text import parse_json_text

if TYPE_CHECKING:
    from fastapi import Request
    from fastapi.routing import APIRoute

NAME_MAX_CHARS = 64
BODYLESS_METHODS = frozenset({"GET", "HEAD", "DELETE"})


async def refuse_body_on_bodyless(request: Request) -> None:
    if request.method in BODYLESS_METHODS and await request.body():
        raise ProblemError(
            400,
            "body_not_allowed",
            f"A {request.method} request carries no body; its signature covers '{{}}'.",
            headers={"Connection": "close"},
        )


async def read_json_body(request: Request) -> None:
    raw = await request.body()
    if not raw:
        return  # FastAPI reports the missing body as a missing field
    _check_media_type(request.headers.get("content-type"))
    # Starlette's Request.json() returns this cached value instead of parsing again.
    request._json = parse_json_text(raw)


def _check_media_type(declared: str | None) -> None:
    header = Message()
    header["content-type"] = declared or ""
    subtype = header.get_content_subtype()
    charset = str(header.get_param("charset", "utf-8")).lower()
    if (
        not declared
        or header.get_content_maintype() != "application"
        or not (subtype == "json" or subtype.endswith("+json"))
        or charset not in ("utf-8", "utf8")
    ):
        raise ProblemError(
            415,
            "unsupported_media_type",
            "The body must be sent as 'Content-Type: application/json' (UTF-8).",
        )


def refuse_unknown_query(request: Request, route: APIRoute) -> None:
    if request.method != "GET" and not getattr(route, "writes_nothing", False):
        return
    known = _query_names(route)
    unknown = sorted({name for name in request.query_params if name not in known})
    if unknown:
        shown = [_bounded(name) for name in unknown[:10]]
        raise ProblemError(
            400,
            "unknown_filter",
            f"Unknown query parameter(s): {', '.join(shown)}; see the documented filters.",
            errors=[ProblemFieldError(field=name, message="Unknown filter") for name in shown],
        )


def _query_names(route: APIRoute) -> set[str]:
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(param.alias for param in dependant.query_params)
        pending.extend(dependant.dependencies)
    return names


def _bounded(name: str) -> str:
    return name if len(name) <= NAME_MAX_CHARS else name[:NAME_MAX_CHARS] + "…"
