"""A process that stops exports the spans still batched (`infra.tracing.tracing`): with a
batch delay far longer than the process lives, the span arrives all the same, and under the
process role's service name unless OTEL_SERVICE_NAME names another."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.cli import ROOT
from tests.integration.otlp_receiver import collecting

pytestmark = pytest.mark.integration

PROGRAM = """
from infra.settings import load_settings
from infra.tracing import handling, tracing

with tracing(load_settings(), "strategies-probe"):
    with handling({}, "probe"):
        pass
"""


def run_python(program: str, env: dict[str, str]) -> str:
    """`program` in a process of its own, to its end; what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.mark.parametrize(("named", "service"), [(None, "strategies-probe"), ("acme", "acme")])
def test_stopping_flushes_the_batch(named: str | None, service: str) -> None:
    with collecting() as collector:
        env = {k: v for k, v in os.environ.items() if k != "OTEL_SERVICE_NAME"}
        env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
        if named is not None:
            env["OTEL_SERVICE_NAME"] = named
        run_python(PROGRAM, env)
        (span,) = collector.named("probe")
    assert span.service == service
    assert span.parent_span_id == ""  # no context in: a trace of its own


def test_without_an_endpoint_no_sdk_is_loaded() -> None:
    program = (
        "import sys, infra.cli.main, infra.bootstrap.http, infra.bootstrap.engine\n"
        "from infra.settings import load_settings\n"
        "from infra.tracing import tracing\n"
        "with tracing(load_settings(), 'x'):\n"
        "    pass\n"
        "print([m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter'))])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OTEL_EXPORTER_OTLP_ENDPOINT"}
    assert run_python(program, env) == "[]"
