"""The operator dashboard in a real browser (issue 20): headless Chromium from Debian's
packages (`.ci/run` installs it), driven by Playwright, against a real `strategies serve`
(embedded pipeline, the session's PostgreSQL). The page loads behind the admin login, a
running Operation's progress bars move without a reload, and a dead letter is redelivered
with the page's button. The screenshot lands in `test-artifacts/dashboard.png`.

Playwright never downloads a browser here: it launches the system's Chromium, and the test
fails (never skips) when there is none.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from infra.devservices.ports import free_port
from infra.postgres.platforms import Credentials
from tests.cli import run_cli
from tests.e2e.client import SignedClient
from tests.fixtures.postgres import scratch_database
from tests.integration.pipeline.harness import BLUE_CHIP

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
PLATFORM = "DASHB"
#: Enough chunks (of 5) that checking and settling them takes several refreshes.
TRADERS = 1000
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TERMINAL = ("settled", "skipped", "failed", "cancelled")


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "no Chromium: install Debian's package (apt-get install chromium), as .ci/run does"
        )
    return found


@dataclass
class Served:
    base: str
    env: dict[str, str]
    admin: dict[str, str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def served(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`strategies serve` as an operator starts it (embedded pipeline, chunks of 5)."""
    folder = tmp_path_factory.mktemp("dashboard")
    with scratch_database(postgres_url, "dashboard_e2e") as url:
        port = free_port()
        token = "admin-" + secrets.token_hex(12)
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        env |= {
            "DATABASE_URL": url,
            "STRATEGIES_DATA_DIR": str(folder / "data"),
            "STRATEGIES_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "STRATEGIES_ADMIN_TOKEN": token,
            "STRATEGIES_CHUNK_SIZE": "5",
            "STRATEGIES_WEBHOOK_ALLOW_PRIVATE": "true",  # the dead receiver is on loopback
            "STRATEGIES_LOG_FORMAT": "json",
        }
        log = folder / "serve.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        served = Served(f"http://127.0.0.1:{port}", env, {"Authorization": f"Bearer {token}"}, log)
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"{served.base}/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, served.output()
                assert time.monotonic() < deadline, served.output()
                time.sleep(0.3)
            yield served
        finally:
            process.terminate()
            process.wait(timeout=60)


@pytest.fixture(scope="module")
def platform(served: Served) -> Credentials:
    """A platform with its Traders' participants, float, and a webhook to a closed port."""
    done = run_cli(served.env, "platform", "create", PLATFORM, "--name", "Dashboard")
    assert done.returncode == 0, done.stderr[-2000:]
    fields = {
        k.strip(): v.strip()
        for k, v in (line.split(":", 1) for line in done.stdout.split("\n") if ":" in line)
    }
    base = f"{served.base}/admin/platforms/{PLATFORM}"
    codes = [{"participant_code": f"P{i:04d}"} for i in range(TRADERS)]
    steps = [
        ("PUT", "/participants", {"participants": codes}, 200),
        (
            "POST",
            "/float-deposits",
            {"currency": "USD", "amount": "10000000.00", "reference": "DASH"},
            201,
        ),
        (
            "POST",
            "/webhooks",
            {
                "url": f"http://127.0.0.1:{free_port()}/nobody-listens",
                "payload_types": ["trade_strategy.operation.status_changed"],
            },
            201,
        ),
    ]
    for method, path, body, status in steps:
        answer = httpx.request(method, base + path, json=body, headers=served.admin, timeout=30)
        assert answer.status_code == status, answer.text
    return Credentials(PLATFORM, fields["api key"], fields["secret"], fields["passphrase"])


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def log_in(page: Page, served: Served) -> None:
    await page.goto(f"{served.base}/dashboard")
    await page.fill("#token", served.admin["Authorization"].removeprefix("Bearer "))
    await page.click("button[type=submit]")
    await page.wait_for_selector("#operations")


async def progress(page: Page, operation_id: str) -> tuple[str, tuple[int, int]] | None:
    """(status, (chunks checked, chunks settled)) as the page shows them now."""
    row = page.locator(f'tr[data-operation="{operation_id}"]')
    if await row.count() == 0:
        return None
    bars = row.locator("progress")
    if await bars.count() < 2:
        return None
    status = await row.get_attribute("data-status") or ""
    checked = await bars.nth(0).get_attribute("value") or "0"
    settled = await bars.nth(1).get_attribute("value") or "0"
    return status, (int(checked), int(settled))


async def test_the_dashboard_shows_an_operation_moving_and_redelivers_a_dead_letter(
    served: Served, platform: Credentials, browser: Browser
) -> None:
    page = await browser.new_page(viewport={"width": 1500, "height": 1100})
    await log_in(page, served)
    assert "Recent Operations" in await page.content()

    async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
        client = SignedClient(http, platform)
        created = await client.post("/strategies", {"quoted_currency": "USD"})
        assert created.status_code == 201, created.text
        people = [{"participant_code": f"P{i:04d}", "amount": "10.00"} for i in range(TRADERS)]
        enroll = await client.post(
            f"/strategies/{created.json()['id']}/enroll",
            {"allocations": BLUE_CHIP, "participants": people},
        )
        assert enroll.status_code == 202, enroll.text
        operation_id = enroll.json()["id"]

        # The page is not reloaded: only its own refresh can move the bars.
        seen: list[tuple[int, int]] = []
        deadline = time.monotonic() + 240
        while True:
            shown = await progress(page, operation_id)
            if shown is not None:
                status, chunks = shown
                if not seen or seen[-1] != chunks:
                    seen.append(chunks)
                if status in TERMINAL:
                    break
            assert time.monotonic() < deadline, (seen, served.output())
            await asyncio.sleep(0.2)
        total = TRADERS // 5
        assert seen[-1] == (total, total), seen
        moving = [s for s in seen if s != (total, total)]
        assert len(moving) >= 2, f"the bars did not move on the page: {seen}"

        # The receiver never answers: the Operation's notifications end as dead letters.
        button = page.locator("button[data-redeliver]").first
        await button.wait_for(timeout=90_000)
        delivery_id = await button.get_attribute("data-redeliver")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        async with page.expect_navigation():
            await button.click()
        assert page.url == f"{served.base}/dashboard"

        hooks = f"/admin/platforms/{PLATFORM}/webhooks"
        subscription = (await http.get(hooks, headers=served.admin)).json()[0]["id"]
        log = await http.get(f"{hooks}/{subscription}/deliveries", headers=served.admin)
        statuses = {d["id"]: d["status"] for d in log.json()["message"]}
        assert statuses[delivery_id] == "pending", statuses  # back on a retry schedule


async def test_swagger_ui_renders_from_this_server_alone(served: Served, browser: Browser) -> None:
    page = await browser.new_page()
    hosts: set[str] = set()
    page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
    await page.goto(f"{served.base}/docs")
    await page.locator(".opblock").first.wait_for(timeout=30_000)
    assert hosts == {served.base.removeprefix("http://")}
