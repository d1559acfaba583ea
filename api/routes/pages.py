"""Pages for people, with every asset served from this package (issue 20): `/docs`, Swagger
UI from the vendored `swagger-ui-dist` (FastAPI's default page loads it from a CDN and is
blank offline; ReDoc is off for the same reason), and `/asyncapi`, the AsyncAPI document of
the topics as a readable page. Both are public, like the documents they show."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from api.asyncapi_page import channels
from api.pages import HEADERS, STATIC_PATH, page
from infra.bus.asyncapi import asyncapi_document

router = APIRouter(include_in_schema=False)

SWAGGER = f"{STATIC_PATH}/swagger-ui"
#: Swagger UI's page runs FastAPI's inline initialiser and sets inline styles; everything
#: it loads or calls stays on this origin.
SWAGGER_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> Response:
    answer = get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
        oauth2_redirect_url=None,
        # The validator badge would send the document to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    answer.headers.update({**HEADERS, "Content-Security-Policy": SWAGGER_CSP})
    return answer


@router.get("/asyncapi", response_class=HTMLResponse)
async def asyncapi_page(request: Request) -> Response:
    document = asyncapi_document(request.app.state.settings.topic_prefix, request.app.version)
    return page(
        "asyncapi.html",
        title="Kafka topics (AsyncAPI)",
        info=document.get("info", {}),
        version=document["asyncapi"],
        channels=channels(document),
    )
