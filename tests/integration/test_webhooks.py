"""Webhooks end to end: a real Operation through the Engine on the in-process bus and real
PostgreSQL, the dispatcher on the events topic, and real HTTP receivers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
import typer
from fastapi import FastAPI
from pydantic import SecretStr

from api.errors import install_error_handlers
from api.routes import webhooks as webhook_routes
from api.webhook_verify import verify_webhook
from domain.statuses import OperationStatus, OperationType
from domain.webhook_url import IPAddress
from infra.bootstrap.engine import Engine
from infra.bus.memory import InProcessBus
from infra.metrics import METRICS
from infra.postgres.heartbeats import ROLES
from infra.postgres.platforms import create_platform
from infra.postgres.secrets_box import SecretBox, secret_box_for
from infra.postgres.webhooks_store import PAYLOAD_TYPES, WebhookStore
from infra.settings import Settings
from infra.webhook_targets import Resolver, system_resolver
from projections import queries
from tests.integration.pipeline.harness import BLUE_CHIP, wait_terminal
from tests.integration.webhook_receiver import Receiver, serving
from workers.webhooks import (
    EXECUTION_CHANGED,
    OPERATION_CHANGED,
    TRADER_CREATED,
    RetryPolicy,
    WebhookSender,
)

pytestmark = pytest.mark.integration

#: A registered platform: subscriptions for platforms nobody registered are refused.
PLATFORM = "WEBHOOK-IT"
FAST = RetryPolicy(quick=4, quick_interval=0.02, backoff=3, backoff_initial=0.05, timeout=0.3)
CODES = ["W001", "W002", "W003"]
UNKNOWN = "W404"  # never registered: the credit check rejects it
TOKEN = "admin-test-token"


@dataclass
class Rig:
    engine: Engine
    store: WebhookStore
    sender: WebhookSender
    api: httpx.AsyncClient


@contextlib.asynccontextmanager
async def rig(
    database_url: str, *, allow_private: bool = True, resolve: Resolver = system_resolver
) -> AsyncIterator[Rig]:
    settings = Settings(database_url=database_url, chunk_size=25)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=8)
    box = SecretBox(os.urandom(32))
    store = WebhookStore(pool, box)
    # the receivers listen on loopback: a development setting (STRATEGIES_WEBHOOK_ALLOW_PRIVATE)
    sender = WebhookSender(
        store, FAST, poll_interval=0.05, allow_private=allow_private, resolve=resolve
    )
    bus = InProcessBus()
    app = FastAPI()
    app.include_router(webhook_routes.router)
    install_error_handlers(app)
    app.state.settings = SimpleNamespace(admin_token=SecretStr(TOKEN), webhook_allow_private=True)
    app.state.db_pool = pool
    app.state.secret_box = box
    transport = httpx.ASGITransport(app=app)
    auth = {"authorization": f"Bearer {TOKEN}"}
    try:
        async with (
            # every role but webhooks: the projections role records the notifications, and this
            # rig runs its own sender (fast retries)
            Engine(
                settings, database_url, [r for r in ROLES if r != "webhooks"], bus=bus
            ) as engine,
            httpx.AsyncClient(transport=transport, base_url="http://api", headers=auth) as api,
        ):
            await create_platform(pool, PLATFORM, "Webhook tests", box)
            await sender.start()
            try:
                yield Rig(engine, store, sender, api)
            finally:
                await sender.stop()
    finally:
        await pool.close()


async def subscribe(api: httpx.AsyncClient, url: str, types: tuple[str, ...], **extra: Any) -> Any:
    response = await api.post(
        f"/admin/platforms/{PLATFORM}/webhooks",
        json={"url": url, "payload_types": list(types), **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def enroll(engine: Engine, codes: list[str]) -> tuple[UUID, UUID]:
    trading = engine.trading
    await engine.call(trading.register_participants, PLATFORM, CODES)
    await engine.call(trading.deposit_float, PLATFORM, "USD", Decimal("50000.00"), "IT")
    strategy, _ = await engine.call(
        trading.create_strategy, PLATFORM, uuid4(), {"quoted_currency": "USD"}
    )
    body = {
        "allocations": BLUE_CHIP,
        "participants": [{"participant_code": c, "amount": "200.00"} for c in codes],
    }
    operation, _ = await engine.call(
        trading.request_operation, PLATFORM, strategy.id, uuid4(), OperationType.ENROLLMENT, body
    )
    done = await wait_terminal(trading, operation.id)
    assert done.status is OperationStatus.SETTLED
    return strategy.id, operation.id


async def eventually(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert await check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_notifications_arrive_signed_with_the_spec_payloads_even_through_failures(
    fresh_database_url: str,
) -> None:
    with serving(Receiver()) as healthy, serving(Receiver(fail_first=2)) as flaky:
        async with rig(fresh_database_url) as r:
            good = await subscribe(r.api, healthy.url, PAYLOAD_TYPES, legacy_headers=True)
            shaky = await subscribe(r.api, flaky.url, PAYLOAD_TYPES)
            _, operation_id = await enroll(r.engine, [*CODES, UNKNOWN])

            async def all_delivered() -> bool:
                kinds = Counter(x.payload_type for x in healthy.ok())
                return (
                    kinds[TRADER_CREATED] == len(CODES)
                    and kinds[EXECUTION_CHANGED] == 2 * len(CODES) + 1
                    and _op_statuses(healthy, operation_id)[-1:] == ["settled"]
                    and len(flaky.ok()) == len(healthy.ok())
                )

            await eventually(all_delivered)
            await asyncio.sleep(0.3)  # anything still in flight would show up now
            operation = await queries.get_operation(r.engine.pool, PLATFORM, operation_id)

    # signatures: every request verifies, the legacy one too where asked
    for got, secret in [(x, good["secret"]) for x in healthy.requests] + [
        (x, shaky["secret"]) for x in flaky.requests
    ]:
        assert verify_webhook(secret, got.body, got.headers)
    assert all("x-zh-hook-signature-256" in x.headers for x in healthy.requests)
    assert not any("x-zh-hook-signature-256" in x.headers for x in flaky.requests)

    # the Operation: every transition, in order, ending in the read model's object
    statuses = _op_statuses(healthy, operation_id)
    assert statuses[0] == "validating" and statuses[-1] == "settled"
    last = [x.payload for x in healthy.ok() if x.payload_type == OPERATION_CHANGED][-1]
    assert operation is not None and last == operation

    # Executions: approved ones open then settle; the rejected one sends its terminal only
    executions = [x.payload for x in healthy.ok() if x.payload_type == EXECUTION_CHANGED]
    by_code: dict[str, list[str]] = {}
    for execution in executions:
        by_code.setdefault(execution["participant_code"], []).append(execution["status"])
        assert {"id", "operation_id", "trader_id", "instructions", "status"} <= set(execution)
    assert by_code == {
        **{c: ["awaiting_execution", "settled"] for c in CODES},
        UNKNOWN: ["rejected"],
    }
    settled = [e for e in executions if e["status"] == "settled"]
    assert all(i["status"] == "filled" for e in settled for i in e["instructions"])

    # trader.created: exactly once per Trader, with the spec's fields
    created = [x.payload for x in healthy.ok() if x.payload_type == TRADER_CREATED]
    assert sorted(t["participant_code"] for t in created) == CODES
    spec_fields = {"id", "strategy_id", "participant_code", "account_label", "auto_rebalance"}
    assert all(spec_fields | {"created_at", "updated_at"} <= set(t) for t in created)

    # the failing receiver: each notification once successfully, after two 500s each
    assert set(Counter(x.notification_id for x in flaky.ok()).values()) == {1}
    attempts = Counter(x.notification_id for x in flaky.requests)
    assert set(attempts.values()) == {3}
    assert Counter(x.payload_type for x in flaky.ok()) == Counter(
        x.payload_type for x in healthy.ok()
    )


def attempts_counted() -> Counter[str]:
    """The webhook attempts this process counted so far, by outcome."""
    sample = METRICS.registry.get_sample_value
    return Counter(
        {
            outcome: int(sample("strategies_webhook_attempts_total", {"outcome": outcome}) or 0)
            for outcome in ("delivered", "retry", "dead")
        }
    )


async def test_a_dead_receiver_ends_in_dead_letters_that_redeliver_sends_once_it_recovers(
    fresh_database_url: str,
) -> None:
    with serving(Receiver(hang=True)) as dead, serving(Receiver()) as healthy:
        async with rig(fresh_database_url) as r:
            before = attempts_counted()
            stuck = await subscribe(r.api, dead.url, (OPERATION_CHANGED,))
            fine = await subscribe(r.api, healthy.url, (OPERATION_CHANGED,))
            _, operation_id = await enroll(r.engine, CODES)
            settled_at = time.monotonic()
            await eventually(lambda: _settled_seen(healthy, operation_id), timeout=3)
            # on time: the healthy subscription did not wait for the dead one's retries
            seen = next(x.at for x in healthy.ok() if x.payload["status"] == "settled")
            assert seen - settled_at < 1.0
            expected = len(healthy.ok())

            log_url = f"/admin/platforms/{PLATFORM}/webhooks/{stuck['id']}/deliveries"

            async def all_dead() -> bool:
                found = (await r.api.get(log_url, params={"status": "dead"})).json()["message"]
                return len(found) == expected

            await eventually(all_dead, timeout=30)
            dead_letters = (await r.api.get(log_url, params={"status": "dead"})).json()["message"]
            assert all(d["attempts"] == 8 and d["last_error"] for d in dead_letters)
            assert not dead.ok()
            counted = attempts_counted() - before
            assert counted["dead"] == expected and counted["retry"] == 7 * expected
            assert counted["delivered"] >= expected  # the healthy subscription's

            dead.hang = False  # the receiver recovers; the platform asks for a redelivery
            for letter in dead_letters:
                again = await r.api.post(f"{log_url}/{letter['id']}/redeliver")
                assert again.status_code == 200, again.text
                assert again.json()["status"] == "pending"
            r.sender.poke()

            async def all_redelivered() -> bool:
                found = (await r.api.get(log_url, params={"status": "delivered"})).json()
                return len(found["message"]) == expected

            await eventually(all_redelivered)
            assert (attempts_counted() - before)["delivered"] >= 2 * expected
            again = await r.api.post(f"{log_url}/{dead_letters[0]['id']}/redeliver")
            assert again.status_code == 409
            missing = await r.api.post(f"{log_url}/{uuid4()}/redeliver")
            assert missing.status_code == 404

            listed = (await r.api.get(f"/admin/platforms/{PLATFORM}/webhooks")).json()
            assert {s["id"] for s in listed} == {stuck["id"], fine["id"]}
            assert all("secret" not in s for s in listed)
            gone = await r.api.delete(f"/admin/platforms/{PLATFORM}/webhooks/{stuck['id']}")
            assert gone.status_code == 204
            listed = (await r.api.get(f"/admin/platforms/{PLATFORM}/webhooks")).json()
            assert [s["id"] for s in listed] == [fine["id"]]

    recovered = Counter(x.notification_id for x in dead.ok())
    assert len(recovered) == expected and set(recovered.values()) == {1}
    assert {x.notification_id for x in dead.ok()} == {d["id"] for d in dead_letters}
    for got in dead.ok():
        assert verify_webhook(stuck["secret"], got.body, got.headers)


async def test_a_graceful_stop_lets_the_attempts_in_flight_finish(
    fresh_database_url: str,
) -> None:
    """Stopping the sender does not cut short a request the receiver is answering: it is
    recorded as delivered, not left leased to be sent a second time by the next sender."""
    with serving(Receiver(delay=0.2)) as slow:
        async with rig(fresh_database_url) as r:
            await subscribe(r.api, slow.url, PAYLOAD_TYPES)
            await enroll(r.engine, CODES)
            await eventually(lambda: asyncio.sleep(0, result=slow.arrivals > 0))
            await r.sender.stop()
            await asyncio.sleep(0.3)  # a request cut short would be answered meanwhile
            sent = {x.notification_id for x in slow.requests}
            rows = await r.engine.pool.fetch(
                "SELECT id::text, status FROM webhook_deliveries WHERE id::text = ANY($1)",
                list(sent),
            )
    assert sent and {row["status"] for row in rows} == {"delivered"}
    assert len(rows) == len(sent)


async def test_admin_endpoints_need_the_token(fresh_database_url: str) -> None:
    async with rig(fresh_database_url) as r:
        response = await r.api.get(
            f"/admin/platforms/{PLATFORM}/webhooks", headers={"authorization": "Bearer wrong"}
        )
        assert response.status_code == 401
        bad = await r.api.post(
            f"/admin/platforms/{PLATFORM}/webhooks",
            json={"url": "http://x/h", "payload_types": ["trade_strategy.nope"]},
        )
        assert bad.status_code in (400, 422)


def resolving(names: dict[str, list[str]]) -> Resolver:
    """DNS as a zone file: the answers a name server would give (it is not ours to run)."""

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in names[host]]

    return resolve


@pytest.mark.parametrize(
    "answers", [["127.0.0.1"], ["93.184.216.34", "10.1.2.3"], ["::ffff:169.254.169.254"]]
)
async def test_a_name_that_resolves_to_a_private_address_is_refused_at_send_time(
    fresh_database_url: str, answers: list[str]
) -> None:
    """Registered while its name looked public, the name now answers with an address inside
    (DNS rebinding): each attempt is a failed delivery saying why, and nothing is sent."""
    dns = resolving({"hooks.example.com": answers})
    with serving(Receiver()) as receiver:
        async with rig(fresh_database_url, allow_private=False, resolve=dns) as r:
            sub = await subscribe(r.api, "https://hooks.example.com/h", (OPERATION_CHANGED,))
            await enroll(r.engine, CODES)
            log_url = f"/admin/platforms/{PLATFORM}/webhooks/{sub['id']}/deliveries"

            async def all_dead() -> bool:
                page = (await r.api.get(log_url)).json()["message"]
                return bool(page) and all(d["status"] == "dead" for d in page)

            await eventually(all_dead, timeout=30)
            page = (await r.api.get(log_url)).json()["message"]
    assert not receiver.requests
    for delivery in page:
        assert delivery["last_status_code"] is None
        assert delivery["last_error"].startswith("refused: hooks.example.com resolves to ")
        assert "not a public address" in delivery["last_error"]


async def test_an_attempt_connects_to_the_address_it_checked_and_names_the_host(
    fresh_database_url: str,
) -> None:
    """The name is resolved once, by the sender: the request goes to that address with the
    name in Host (the system resolver has never heard of `receiver.test`)."""
    with serving(Receiver()) as receiver:
        port = httpx.URL(receiver.url).port
        dns = resolving({"receiver.test": ["127.0.0.1"]})
        async with rig(fresh_database_url, allow_private=True, resolve=dns) as r:
            await subscribe(r.api, f"http://receiver.test:{port}/hooks", (OPERATION_CHANGED,))
            _, operation_id = await enroll(r.engine, CODES)
            await eventually(lambda: _settled_seen(receiver, operation_id))
    assert {x.headers["host"] for x in receiver.requests} == {f"receiver.test:{port}"}


def _op_statuses(receiver: Receiver, operation_id: UUID) -> list[str]:
    return [
        x.payload["status"]
        for x in receiver.ok()
        if x.payload_type == OPERATION_CHANGED and x.payload["id"] == str(operation_id)
    ]


async def _settled_seen(receiver: Receiver, operation_id: UUID) -> bool:
    return _op_statuses(receiver, operation_id)[-1:] == ["settled"]


def test_an_operator_manages_subscriptions_from_the_command_line(fresh_database_url: str) -> None:
    from typer.testing import CliRunner

    from infra.cli import webhooks as cli_webhooks
    from infra.postgres.master_key import generate_master_key

    settings = Settings.model_validate(
        {"database_url": fresh_database_url, "STRATEGIES_MASTER_KEY": generate_master_key()}
    )
    root = typer.Typer()
    root.add_typer(cli_webhooks.app, name="webhooks")

    @root.callback()
    def main(ctx: typer.Context) -> None:
        ctx.obj = settings

    def run(*args: str) -> Any:
        return CliRunner().invoke(root, ["webhooks", *args])

    refused = run("add", PLATFORM, "https://hooks.example/a")
    assert refused.exit_code == 1 and "platform_not_found" in refused.output
    asyncio.run(_registered(fresh_database_url, settings))

    added = run("add", PLATFORM, "https://hooks.example/a", "--type", TRADER_CREATED, "--legacy")
    assert added.exit_code == 0, added.output
    assert "whsec_" in added.output and "legacy headers: True" in added.output
    subscription_id = re.search(r"subscription ([0-9a-f-]{36})", added.output)[1]  # type: ignore[index]
    listed = run("list", PLATFORM)
    assert subscription_id in listed.output and "whsec_" not in listed.output
    log = run("deliveries", PLATFORM, subscription_id)
    assert log.exit_code == 0 and "page 1 of 1" in log.output, log.output
    refused = run("redeliver", PLATFORM, subscription_id, str(uuid4()))
    assert refused.exit_code == 1 and "not a dead letter" in refused.output
    assert run("remove", PLATFORM, subscription_id).exit_code == 0
    assert subscription_id not in run("list", PLATFORM).output
    assert run("add", PLATFORM, "ftp://nope").exit_code == 1
    for url in ("http://hooks.example/h", "https://127.0.0.1/h", "https://u:p@hooks.example/h"):
        refused = run("add", PLATFORM, url)
        assert refused.exit_code == 1 and "(invalid_webhook_url)" in refused.output, url
    assert run("list", PLATFORM, "--json").output.splitlines()[-1] == "[]"  # after any log


async def _registered(database_url: str, settings: Settings) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        await create_platform(pool, PLATFORM, "Webhook tests", secret_box_for(settings))
    finally:
        await pool.close()
