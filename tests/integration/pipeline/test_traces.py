"""One trace per Operation across processes (issue 20): `strategies serve` and `strategies
worker all` on real Kafka and PostgreSQL export their spans over OTLP/HTTP to a receiver this
test runs; the HTTP request's span (or a command record's sender's) and the span of every
stage task of its Operation share one trace id, and the workers' log lines carry the
request's correlation id."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from infra import tracing
from infra.bus import Record
from infra.bus.kafka import KafkaBus
from infra.bus.topic_names import PLATFORM_HEADER, Topics
from infra.postgres.platforms import Credentials
from tests.e2e.client import SignedClient
from tests.fixtures.postgres import scratch_database
from tests.integration.http_world import http_world
from tests.integration.otlp_receiver import Collector, ReceivedSpan, collecting
from tests.integration.pipeline.harness import BLUE_CHIP
from tests.integration.processes import api_and_workers, pipeline_env, ready_platform
from tests.log_capture import json_log_lines

pytestmark = pytest.mark.integration

PLATFORM = "TRACES1"
CODES = [f"T{i}" for i in range(5)]  # two chunks of three
STAGES = ("credit-check", "pricing", "blocks", "execution")
UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
T = TypeVar("T")


@pytest.fixture(scope="module")
def traced_pipeline(
    postgres_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Collector, Path, str, dict[str, str]]]:
    """(receiver, logs folder, API base URL, environment); the processes are stopped (and
    their batched spans flushed) after the module's tests, which read what they sent."""
    logs = tmp_path_factory.mktemp("traces")
    with (
        collecting() as collector,
        scratch_database(postgres_url, "traces") as url,
    ):
        env = pipeline_env(url, kafka_bootstrap, "traces")
        env.pop("OTEL_SERVICE_NAME", None)
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.url
        env["OTEL_BSP_SCHEDULE_DELAY"] = "200"  # the SDK's own variable: export soon
        with api_and_workers(env, logs) as base:
            yield collector, logs, base, env


@pytest.fixture(scope="module")
def credentials(traced_pipeline: tuple[Collector, Path, str, dict[str, str]]) -> Credentials:
    _, _, base, env = traced_pipeline
    return ready_platform(base, env, PLATFORM, CODES)


async def eventually(probe: Callable[[], T], what: str, timeout: float = 60) -> T:
    """`probe()` once it is truthy."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what}: {found}"
        await asyncio.sleep(0.2)
    return found


async def stage_spans(collector: Collector, operation_id: str, chunks: int) -> list[ReceivedSpan]:
    """Every stage task's span of the Operation, once all have arrived (a check and a
    settlement per chunk, a pricing and a blocks task)."""
    expected = {"credit-check": chunks, "pricing": 1, "blocks": 1, "execution": chunks}

    def arrived() -> list[ReceivedSpan]:
        found = [
            span
            for span in collector.spans
            if span.name in STAGES
            and span.attributes.get("strategies.operation_id") == operation_id
        ]
        counts = {stage: sum(span.name == stage for span in found) for stage in STAGES}
        return found if counts == expected else []

    return await eventually(arrived, "the stage tasks' spans never all arrived")


def worker_lines(logs: Path, operation_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (logs / "workers.log").read_text().splitlines()]
    return [line for line in lines if line.get("operation_id") == operation_id]


async def strategy_of(base: str, credentials: Credentials) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        created = await SignedClient(http, credentials).post(
            "/strategies", {"quoted_currency": "USD"}
        )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_an_http_request_and_every_stage_task_of_its_operation_are_one_trace(
    traced_pipeline: tuple[Collector, Path, str, dict[str, str]], credentials: Credentials
) -> None:
    collector, logs, base, _ = traced_pipeline
    strategy = await strategy_of(base, credentials)
    people = [{"participant_code": code, "amount": "100.00"} for code in CODES]
    request_id = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        client = SignedClient(http, credentials)
        answer = await client.post(
            f"/strategies/{strategy}/enroll",
            {"allocations": BLUE_CHIP, "participants": people},
            request_id=request_id,
        )
        assert answer.status_code == 202, answer.text
        assert answer.headers["X-Correlation-ID"] == request_id
        operation = answer.json()["id"]

        async def status() -> str:
            found = await client.get(f"/strategies/operations/{operation}")
            return str(found.json()["status"])

        deadline = time.monotonic() + 90
        while (now := await status()) not in ("settled", "skipped", "failed"):
            assert time.monotonic() < deadline, now
            await asyncio.sleep(0.1)
        assert now == "settled"

    stages = await stage_spans(collector, operation, chunks=2)
    (request,) = [
        span
        for span in collector.named("POST /strategies/{strategy_id}/enroll")
        if span.attributes.get("strategies.correlation_id") == request_id
    ]
    assert request.service == "strategies-serve"
    assert request.attributes["http.response.status_code"] == 202
    assert {span.trace_id for span in stages} == {request.trace_id}
    # Children of the request's span, or of the endpoint's under it (FastAPI's own spans).
    serving = {
        span.span_id
        for span in collector.spans
        if span.trace_id == request.trace_id and span.service == "strategies-serve"
    }
    assert {span.parent_span_id for span in stages} <= serving
    assert {span.service for span in stages} == {"strategies-worker-all"}
    assert {span.attributes["strategies.correlation_id"] for span in stages} == {request_id}
    settlements = [span for span in stages if span.name == "execution"]
    assert sorted(span.attributes["strategies.chunk"] for span in settlements) == [0, 1]
    assert {span.attributes["strategies.action"] for span in settlements} == {"settle"}

    lines = worker_lines(logs, operation)
    events = {line["event"] for line in lines}
    assert {"credit.checked", "pricing.locked", "chunk.settled"} <= events, events
    assert {line.get("correlation_id") for line in lines} == {request_id}
    assert {line.get("trace_id") for line in lines} == {request.trace_id}


async def test_a_command_records_trace_context_and_correlation_id_are_honoured(
    traced_pipeline: tuple[Collector, Path, str, dict[str, str]],
    credentials: Credentials,
    kafka_bootstrap: str,
) -> None:
    collector, logs, base, env = traced_pipeline
    strategy = await strategy_of(base, credentials)
    people = [{"participant_code": code, "amount": "50.00"} for code in CODES]
    command = {
        "command": "enroll",
        "strategy_id": strategy,
        "body": {"allocations": BLUE_CHIP, "participants": people},
    }
    headers = {
        PLATFORM_HEADER: PLATFORM,
        "traceparent": f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01",
        "correlation_id": "upstream-order-17",
    }
    topics = Topics(env["STRATEGIES_TOPIC_PREFIX"])
    sender = KafkaBus(kafka_bootstrap, client_id="traces-test")
    await sender.start()
    try:
        value = json.dumps(command).encode()
        await sender.publish(Record(topics.commands, value, str(uuid.uuid4()), headers))
    finally:
        await sender.stop()

    (consumed,) = await eventually(
        lambda: [s for s in collector.named("command") if s.trace_id == UPSTREAM_TRACE],
        "the command's span never arrived",
    )
    assert consumed.parent_span_id == UPSTREAM_SPAN
    assert consumed.attributes["strategies.correlation_id"] == "upstream-order-17"
    (operation,) = await eventually(
        lambda: {
            span.attributes["strategies.operation_id"]
            for span in collector.named("credit-check")
            if span.trace_id == UPSTREAM_TRACE
        },
        "no stage task joined the command's trace",
    )
    stages = await stage_spans(collector, operation, chunks=2)
    assert {span.trace_id for span in stages} == {UPSTREAM_TRACE}
    assert {span.parent_span_id for span in stages} == {consumed.span_id}
    lines = worker_lines(logs, operation)
    assert lines and {line.get("correlation_id") for line in lines} == {"upstream-order-17"}


async def test_embedded_mode_makes_the_same_trace_over_its_in_process_bus(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` without Kafka: the relay and the stage tasks run in the API's process, over
    the in-process bus; the records' headers carry the trace all the same. Spans are
    recorded in memory by the SDK's tracer (this process's global provider is untouched)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("tests"))
    try:
        with json_log_lines() as lines, scratch_database(postgres_url, "traces") as url:
            async with http_world(url, tmp_path, "TRACES2", CODES) as world:
                strategy = await world.strategy()
                people = [{"participant_code": code, "amount": "20.00"} for code in CODES]
                request_id = str(uuid.uuid4())
                answer = await world.client.post(
                    f"/strategies/{strategy}/enroll",
                    {"allocations": BLUE_CHIP, "participants": people},
                    request_id=request_id,
                )
                assert answer.status_code == 202, answer.text
                operation = answer.json()
                assert (await world.finished(operation))["status"] == "settled"
    finally:
        provider.shutdown()
    spans = exporter.get_finished_spans()
    (request,) = [
        span
        for span in spans
        if span.name == "POST /strategies/{strategy_id}/enroll"
        and (span.attributes or {}).get("strategies.correlation_id") == request_id
    ]
    stages = [
        span
        for span in spans
        if (span.attributes or {}).get("strategies.operation_id") == operation["id"]
    ]
    chunks = 3  # http_world's chunks are of two Traders
    names = sorted(span.name for span in stages)
    assert names == sorted(["credit-check", "execution"] * chunks + ["pricing", "blocks"])
    assert {span.context.trace_id for span in stages} == {request.context.trace_id}
    assert {span.parent.span_id for span in stages if span.parent} == {request.context.span_id}
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    mine = [line for line in logged if line.get("operation_id") == operation["id"]]
    assert {"credit.checked", "pricing.locked", "chunk.settled"} <= {line["event"] for line in mine}
    assert {line.get("correlation_id") for line in mine} == {request_id}
