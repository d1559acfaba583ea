"""compose.yaml as shipped, without Docker: every service of our image, its command, its
environment and its health check exactly as compose.yaml says (after `${...}` from a `.env`
made by `strategies env generate`), run as a local process in `depends_on` order. Only the
addresses change: `postgres:5432` becomes the session's PostgreSQL reached by URL (a new,
empty database, so the `migrate` service really makes the schema), `kafka:9092` the local
broker, and the ports each container would have to itself become free loopback ports.

Then the system is used as the README's "Deploying with compose" says: a platform created
with `docker compose run --rm api strategies platform create ...`, an enrollment and a
rebalance over signed HTTP, a top-up through the command topic, webhooks checked at a real
receiver, `strategies audit verify`, and SIGTERM to every process, each of which must exit 0
within its `stop_grace_period`. The services run must be exactly the services compose.yaml
lists (bar the ones the test provides, or that only observe): a new service fails this test
until the test knows how to run it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from dotenv import dotenv_values

from api.webhook_verify import verify_webhook
from infra.bus.topic_names import Topics
from infra.devservices.ports import LOOPBACK, free_port
from infra.postgres.platforms import Credentials
from tests.compose_file import IMAGE, interpolated, stop_grace_seconds
from tests.e2e.client import SignedClient
from tests.integration.pipeline.harness import BLUE_CHIP, CommandClient
from tests.integration.webhook_receiver import Receiver, serving

pytestmark = pytest.mark.integration

#: Services compose.yaml runs that this test replaces (PostgreSQL, Kafka) or leaves out
#: (the observability profile only watches).
PROVIDED = {"postgres", "kafka"}
OBSERVING = {"prometheus", "grafana"}
PLATFORM = "COMPOSE1"
CODES = ["C001", "C002", "C003"]
OPERATION_CHANGED = "trade_strategy.operation.status_changed"
#: Only what a container would have besides its service's environment: the image's ENV
#: (Dockerfile), a PATH that finds `strategies`, and coverage's hand-over to child processes.
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
PASSED_THROUGH = ("HOME", "TMPDIR", "LANG")


@dataclass
class Service:
    """One compose service made runnable here: argv, environment and health check with
    their addresses rewritten, and the processes started for it (one per replica)."""

    name: str
    spec: dict[str, Any]
    argv: list[str]
    env: dict[str, str]
    health: list[str] | None
    #: the port its health check asks, here
    port: int | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def grace(self) -> float:
        return stop_grace_seconds(self.spec)

    def depends_on(self) -> dict[str, str]:
        """Engine services this one waits for -> the condition compose waits on."""
        found = self.spec.get("depends_on", {})
        if isinstance(found, list):
            found = {name: {"condition": "service_started"} for name in found}
        return {
            name: rule.get("condition", "service_started")
            for name, rule in found.items()
            if name not in PROVIDED
        }

    def tail(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs)


def listening(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def container_env(extra: Mapping[str, str]) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    base = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    coverage = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(("COVERAGE_", "COV_CORE_"))
    }
    return {
        **base,
        **coverage,
        **IMAGE_ENV,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    }


def rewritten(
    name: str, spec: dict[str, Any], variables: Mapping[str, str], database: str, kafka: str
) -> Service:
    """The service with compose's addresses swapped for this machine's, nothing else."""
    env = {key: str(value) for key, value in spec.get("environment", {}).items()}
    own_port: dict[str, str] = {}  # a port inside the container -> its free port here
    if "DATABASE_URL" in env:
        url = urlsplit(env["DATABASE_URL"])
        assert (url.hostname, url.port) == ("postgres", 5432), (name, url.hostname)
        # the password is the one PostgreSQL is created with from the same .env
        assert url.password == variables["POSTGRES_PASSWORD"] != "", name
        env["DATABASE_URL"] = database
    if "KAFKA_BOOTSTRAP_SERVERS" in env:
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        env["KAFKA_BOOTSTRAP_SERVERS"] = kafka
    if "STRATEGIES_METRICS_PORT" in env:
        port = str(free_port())
        own_port[env["STRATEGIES_METRICS_PORT"]] = port
        env["STRATEGIES_METRICS_PORT"] = port
    if env.get("STRATEGIES_METRICS_HOST") == "0.0.0.0":
        env["STRATEGIES_METRICS_HOST"] = LOOPBACK
    argv = [str(part) for part in spec["command"]]
    assert argv[0] == "strategies", name
    if "--host" in argv:
        argv[argv.index("--host") + 1] = LOOPBACK
    if "--port" in argv:
        at = argv.index("--port") + 1
        own_port[argv[at]] = str(free_port())
        argv[at] = own_port[argv[at]]
    leftover = [v for v in env.values() if "postgres:" in v or "kafka:" in v]
    assert not leftover, (name, leftover)
    health = None
    check = spec.get("healthcheck", {})
    if not check.get("disable"):
        test = [str(part) for part in check["test"]]
        assert test[:2] == ["CMD", "python"], (name, test)
        code = test[-1]
        for inside, here in own_port.items():
            code = code.replace(f"127.0.0.1:{inside}/", f"127.0.0.1:{here}/")
        asked = [here for inside, here in own_port.items() if f"127.0.0.1:{here}/" in code]
        assert len(asked) == 1, (name, "its health check names no port of its own")
        health = [sys.executable, *test[2:-1], code]
        return Service(name, spec, argv, container_env(env), health, int(asked[0]))
    return Service(name, spec, argv, container_env(env), health)


class Stack:
    """The engine services as processes, started in `depends_on` order."""

    def __init__(self, services: dict[str, Service], logs: Path) -> None:
        self.services = services
        self.logs = logs
        self.healthy: set[str] = set()

    def start(self, service: Service) -> None:
        replicas = int(service.spec.get("deploy", {}).get("replicas", 1))
        for replica in range(1, replicas + 1):
            log = self.logs / f"{service.name}-{replica}.log"
            service.logs.append(log)
            with log.open("wb") as output:
                process = subprocess.Popen(
                    service.argv,
                    cwd=self.logs,  # like the image's /app: no .env of its own
                    env=service.env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            service.processes.append(process)

    def satisfied(self, service: Service) -> bool:
        for name, condition in service.depends_on().items():
            other = self.services[name]
            if not other.processes:
                return False
            if condition == "service_completed_successfully":
                codes = [p.poll() for p in other.processes]
                assert None in codes or set(codes) == {0}, other.tail()
                if None in codes:
                    return False
            elif condition == "service_healthy" and name not in self.healthy:
                return False
        return True

    def check_health(self, service: Service) -> None:
        if service.name in self.healthy or not service.processes or service.health is None:
            return
        for process in service.processes:
            assert process.poll() is None, f"{service.name} exited:\n{service.tail()}"
        if service.port is not None and not listening(service.port):
            return  # not listening yet: a probe process would only take CPU from its start
        probe = subprocess.run(service.health, capture_output=True, timeout=10, check=False)
        if probe.returncode == 0:
            self.healthy.add(service.name)

    def up(self, timeout: float = 120) -> None:
        """`docker compose up -d --wait`: every service started once its dependencies are
        met (those ready together start together), then until each is healthy."""
        deadline = time.monotonic() + timeout
        waiting = {s.name for s in self.services.values() if s.health is not None}
        while True:
            for service in self.services.values():
                if not service.processes and self.satisfied(service):
                    self.start(service)
            for service in self.services.values():
                self.check_health(service)
            started = all(s.processes for s in self.services.values())
            if started and waiting <= self.healthy:
                return
            pending = sorted(waiting - self.healthy)
            assert time.monotonic() < deadline, "\n".join(
                self.services[name].tail() for name in pending
            )
            time.sleep(0.3)

    def run(self, name: str, *argv: str) -> subprocess.CompletedProcess[str]:
        """`docker compose run --rm NAME ARGV...`: a one-off process with the service's
        environment and another command."""
        service = self.services[name]
        return subprocess.run(
            list(argv),
            cwd=self.logs,
            env=service.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def down(self) -> dict[str, list[int | None]]:
        """`docker compose down`: SIGTERM to each, SIGKILL past its stop_grace_period; the
        exit codes, None where the grace ran out."""
        running = [(s, p) for s in self.services.values() for p in s.processes if p.poll() is None]
        for _, process in running:
            process.send_signal(signal.SIGTERM)
        codes: dict[str, list[int | None]] = {}
        for service, process in running:
            try:
                codes.setdefault(service.name, []).append(process.wait(timeout=service.grace))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                codes.setdefault(service.name, []).append(None)
        return codes


@contextmanager
def composed(
    variables: Mapping[str, str], database: str, kafka: str, logs: Path
) -> Iterator[Stack]:
    services = interpolated(variables)["services"]
    ours = {name for name, spec in services.items() if spec.get("image") == IMAGE}
    unknown = set(services) - ours - PROVIDED - OBSERVING
    assert not unknown, f"compose.yaml has services this test cannot run: {unknown}"
    assert all(services[name].get("profiles") == ["observability"] for name in OBSERVING)
    stack = Stack(
        {name: rewritten(name, services[name], variables, database, kafka) for name in ours},
        logs,
    )
    try:
        yield stack
    finally:
        codes = stack.down()
    assert set(stack.services) == ours  # everything compose lists ran, nothing else
    for name, service in stack.services.items():
        assert service.processes, name
        if name not in codes:  # a one-shot service that had finished
            assert [p.returncode for p in service.processes] == [0] * len(service.processes)
    bad = {name: found for name, found in codes.items() if set(found) != {0}}
    assert not bad, "\n".join(f"{n} {c}:\n{stack.services[n].tail()}" for n, c in bad.items())


def dotenv_for_test(folder: Path, prefix: str) -> dict[str, str]:
    """A `.env` as the README makes it (`strategies env generate`), plus two of its
    documented optional lines: a loopback receiver, and topics of this test's own."""
    env_file = folder / ".env"
    made = subprocess.run(
        ["strategies", "env", "generate", "--output", str(env_file)],
        cwd=folder,
        env=container_env({}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    with env_file.open("a") as file:
        file.write(f"STRATEGIES_WEBHOOK_ALLOW_PRIVATE=true\nSTRATEGIES_TOPIC_PREFIX={prefix}\n")
    return {k: v for k, v in dotenv_values(env_file).items() if v is not None}


async def settled(client: SignedClient, operation_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        found = (await client.get(f"/strategies/operations/{operation_id}")).json()
        if found["status"] in ("settled", "skipped", "failed"):
            assert found["status"] == "settled", json.dumps(found)
            return dict(found)
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.1)


async def test_compose_yaml_runs_as_processes_and_serves_the_whole_story(
    empty_database_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"compose-{uuid.uuid4().hex[:8]}"
    variables = dotenv_for_test(tmp_path, prefix)
    admin = {"Authorization": f"Bearer {variables['STRATEGIES_ADMIN_TOKEN']}"}
    logs = tmp_path / "logs"
    logs.mkdir()
    with (
        serving(Receiver()) as receiver,
        composed(variables, empty_database_url, kafka_bootstrap, logs) as stack,
    ):
        stack.up()
        api_port = stack.services["api"].argv[-1]
        base = f"http://{LOOPBACK}:{api_port}"

        created = stack.run(
            "api", "strategies", "platform", "create", PLATFORM, "--name", "Compose", "--json"
        )
        assert created.returncode == 0, created.stderr
        fields = json.loads(created.stdout)
        credentials = Credentials(
            PLATFORM, fields["api_key"], fields["secret"], fields["passphrase"]
        )
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=admin) as http:
            path = f"/admin/platforms/{PLATFORM}"
            participants = {"participants": [{"participant_code": c} for c in CODES]}
            assert (await http.put(f"{path}/participants", json=participants)).status_code == 200
            deposit = {"currency": "USD", "amount": "10000.00", "reference": "COMPOSE-FLOAT"}
            assert (await http.post(f"{path}/float-deposits", json=deposit)).status_code == 201
            hook = await http.post(
                f"{path}/webhooks",
                json={"url": receiver.url, "payload_types": [OPERATION_CHANGED]},
            )
            assert hook.status_code == 201, hook.text
            secret = hook.json()["secret"]

        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as http,
            CommandClient(kafka_bootstrap, Topics(prefix), PLATFORM) as commands,
        ):
            client = SignedClient(http, credentials)
            strategy = await client.post("/strategies", {"quoted_currency": "USD"})
            assert strategy.status_code == 201, strategy.text
            sid = strategy.json()["id"]
            # a rebalance naming nobody takes the Traders enrolled with auto_rebalance
            people = [
                {"participant_code": c, "amount": "100.00", "auto_rebalance": True} for c in CODES
            ]
            enroll = await client.post(
                f"/strategies/{sid}/enroll", {"allocations": BLUE_CHIP, "participants": people}
            )
            assert enroll.status_code == 202, enroll.text
            operations = [(await settled(client, enroll.json()["id"]))["id"]]
            rebalance = await client.post(
                f"/strategies/{sid}/rebalance",
                {"allocations": [{"underlying_currency": "ETH", "weight": "1"}]},
            )
            assert rebalance.status_code == 202, rebalance.text
            operations.append((await settled(client, rebalance.json()["id"]))["id"])
            top_up = {
                "allocations": [{"underlying_currency": "ETH", "weight": "1"}],
                "participants": [{"participant_code": CODES[0], "amount": "25.00"}],
            }
            result = await commands.send("top_up", top_up, strategy_id=sid)
            assert result.outcome == "accepted" and result.resource, result
            operations.append((await settled(client, str(result.resource["id"])))["id"])

        deadline = time.monotonic() + 30
        while True:
            done = {
                x.payload["id"]
                for x in receiver.ok()
                if x.payload_type == OPERATION_CHANGED and x.payload["status"] == "settled"
            }
            if done >= set(operations):
                break
            assert time.monotonic() < deadline, (operations, done)
            await asyncio.sleep(0.2)
        assert all(verify_webhook(secret, r.body, r.headers) for r in receiver.requests)

        audit = stack.run("api", "strategies", "audit", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "3 operation(s) verified" in audit.stdout, audit.stdout


def test_the_strategies_command_the_services_run_is_this_checkouts() -> None:
    """The processes above find `strategies` on PATH the way the image does: it must be the
    console script of the environment the tests run in, not another installation."""
    found = shutil.which("strategies", path=container_env({})["PATH"])
    assert found == str(Path(sys.executable).parent / "strategies")
