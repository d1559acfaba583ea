"""The few HTML pages `serve` renders itself (the operator dashboard, the AsyncAPI page, the
offline Swagger UI): Jinja2 templates from `api/templates` with every value escaped, and
assets from `api/static`, both packaged with the code so that nothing loads from a CDN.

Every page is sent with a Content-Security-Policy that allows this origin's scripts and
styles only (no inline script), may not be framed, and is not cached.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_PATH = "/static"

_TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: Swagger UI evaluates an inline initialiser (FastAPI's page): its CSP allows that one.
STRICT_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def render(template: str, **context: Any) -> str:
    return _TEMPLATES.get_template(template).render(static=STATIC_PATH, **context)


def page(
    template: str,
    status_code: int = 200,
    *,
    csp: str = STRICT_CSP,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    sent = {**HEADERS, "Content-Security-Policy": csp, **(headers or {})}
    return HTMLResponse(render(template, **context), status_code=status_code, headers=sent)
