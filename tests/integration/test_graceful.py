"""When PostgreSQL goes away the API answers 503 with a retry hint, promptly, instead of
hanging or failing with a 500; when it is back, the same process serves again."""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path

import httpx
import pytest

from infra.bootstrap.http import create_app
from infra.bootstrap.schema import migrate_database
from infra.devservices.embedded_postgres import EmbeddedPostgres
from infra.postgres.platforms import create_platform
from infra.settings import Settings
from tests.e2e.client import SignedClient

pytestmark = pytest.mark.integration
PROMPT_S = 15.0  # pool timeout (5 s) plus a connect attempt: bounded, never a hang


async def test_the_api_answers_503_while_the_database_is_down_and_recovers(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    server = EmbeddedPostgres(tmp_path / "postgres")
    url = server.start()
    try:
        await migrate_database(url)
        settings = Settings(
            data_dir=tmp_path,
            database_url=url,
            kafka_bootstrap_servers=kafka_bootstrap,
            topic_prefix=f"down-{uuid.uuid4().hex[:8]}",
            master_key=base64.b64encode(bytes(range(32))).decode(),
        )
        app = create_app(settings, url, roles=())  # an API process
        async with app.router.lifespan_context(app):
            credentials = await create_platform(
                app.state.engine.pool, "DOWN01", "Down", app.state.secret_box
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                client = SignedClient(http, credentials)
                assert (await client.get("/strategies")).status_code == 200

                server.stop()
                for method, path, body in (
                    ("GET", "/strategies", None),
                    ("GET", f"/strategies/{uuid.uuid4()}", None),
                    ("POST", "/strategies", {"quoted_currency": "USD"}),
                ):
                    began = time.monotonic()
                    answer = await client.request(method, path, body)
                    took = time.monotonic() - began
                    assert answer.status_code == 503, (path, answer.text)
                    assert answer.headers["retry-after"].isdigit()
                    assert answer.headers["content-type"].startswith("application/problem+json")
                    assert answer.json()["code"] == "unavailable"
                    assert took < PROMPT_S, (path, took)
                    assert "Traceback" not in answer.text
                health = await http.get("/health")
                assert health.status_code == 503

                server.start()
                recovered = await client.get("/strategies")
                assert recovered.status_code == 200, recovered.text
    finally:
        server.stop()
