"""The whole app in one process (embedded pipeline, real PostgreSQL) with one platform ready to
trade over signed HTTP: participants registered, float funded, a webhook receiver subscribed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from infra.bootstrap.engine import Engine
from infra.bootstrap.http import create_app
from infra.postgres.platforms import create_platform
from infra.settings import Settings
from tests.e2e.client import SignedClient
from tests.integration.webhook_receiver import Receiver, serving

ADMIN_TOKEN = "admin-" + secrets.token_urlsafe(16)
PAYLOAD_TYPES = [
    "trade_strategy.operation.status_changed",
    "trade_strategy.execution.status_changed",
    "trade_strategy.trader.created",
    "trade_strategy.strategy.status_changed",
]
TERMINAL = ("settled", "skipped", "failed", "cancelled")
WAIT_S = 120.0
Item = dict[str, Any]


@dataclass
class World:
    engine: Engine
    http: httpx.AsyncClient
    client: SignedClient
    receiver: Receiver
    platform_id: str
    secret_box: Any = None
    app: Any = None

    async def another_platform(self, platform_id: str) -> SignedClient:
        """A second platform's signed client on the same server (nothing registered)."""
        credentials = await create_platform(self.engine.pool, platform_id, "Other", self.secret_box)
        return SignedClient(self.http, credentials)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def caught_up(self) -> None:
        """Until the read models (and webhook rows) hold every event written so far: lists
        can then prove that something was NOT written."""
        assert await self.engine.drain(), "the in-process bus did not catch up"

    async def strategy(self) -> str:
        created = await self.client.post("/strategies", {"quoted_currency": "USD"})
        assert created.status_code == 201, created.text
        strategy_id: str = created.json()["id"]
        return strategy_id

    async def request(self, strategy_id: str, path: str, body: Item) -> Item:
        answer = await self.client.post(f"/strategies/{strategy_id}/{path}", body)
        assert answer.status_code == 202, answer.text
        operation: Item = answer.json()
        return operation

    async def finished(self, operation: Item) -> Item:
        """The Operation once it is terminal (as GET answers it: store or read model)."""
        path = f"/strategies/operations/{operation['id']}"
        return await self.until(path, lambda got: got["status"] in TERMINAL)

    async def until(self, path: str, done: Any) -> Item:
        """GET `path` until `done(body)`: each read model follows its own streams."""
        deadline = time.monotonic() + WAIT_S
        while True:
            answer = await self.client.get(path)
            assert answer.status_code in (200, 404), answer.text
            body: Item = answer.json()
            if answer.status_code == 200 and done(body):
                return body
            assert time.monotonic() < deadline, f"{path} never got there: {body}"
            await asyncio.sleep(0.1)

    async def hooks_until(self, done: Any) -> list[Item]:
        """The accepted webhook payloads once `done(payloads)` holds."""
        deadline = time.monotonic() + WAIT_S
        while True:
            payloads = [r.payload for r in self.receiver.ok()]
            if done(payloads):
                return payloads
            assert time.monotonic() < deadline, f"webhooks never got there: {payloads}"
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def http_world(
    database_url: str,
    data_dir: Path,
    platform_id: str,
    codes: list[str],
    **settings: Any,
) -> AsyncIterator[World]:
    """`settings`: extra `Settings` fields (limits, say). Firm quotes of
    `STRATEGIES_VENUE_FAIL_QUOTES` (the caller's environment) fail. The webhook receiver
    listens on loopback, so private webhook targets are allowed unless `settings` says not."""
    settings.setdefault("webhook_allow_private", True)
    config = Settings(
        data_dir=data_dir,
        database_url=database_url,
        kafka_bootstrap_servers=None,
        master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        admin_token=ADMIN_TOKEN,
        chunk_size=2,
        **settings,
    )
    app = create_app(config, database_url, roles=["all"])  # embedded: the whole pipeline
    with serving(Receiver()) as receiver:
        async with app.router.lifespan_context(app):
            engine: Engine | None = app.state.engine
            assert engine is not None, "the engine did not start"
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api.test", timeout=60
            ) as http:
                credentials = await create_platform(
                    engine.pool, platform_id, "HTTP tests", app.state.secret_box
                )
                client = SignedClient(http, credentials)
                box = app.state.secret_box
                world = World(engine, http, client, receiver, platform_id, box, app)
                await _prepare(world, codes, subscribe=config.webhook_allow_private)
                yield world


async def _prepare(world: World, codes: list[str], *, subscribe: bool) -> None:
    """`subscribe`: the loopback receiver too (only where private targets are allowed)."""
    base = f"/admin/platforms/{world.platform_id}"
    participants = {"participants": [{"participant_code": code} for code in codes]}
    deposit = {"currency": "USD", "amount": "1000000.00", "reference": "HTTP-FLOAT"}
    hook = {"url": world.receiver.url, "payload_types": PAYLOAD_TYPES}
    steps = [
        ("PUT", f"{base}/participants", participants, 200),
        ("POST", f"{base}/float-deposits", deposit, 201),
        ("POST", f"{base}/webhooks", hook, 201),
    ]
    for method, path, body, status in steps[0 if codes else 1 : 3 if subscribe else 2]:
        answer = await world.http.request(method, path, json=body, headers=world.admin)
        assert answer.status_code == status, answer.text
