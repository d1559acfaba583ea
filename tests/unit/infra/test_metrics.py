"""The metrics' names follow Prometheus conventions, stage calls are counted as they end,
and a worker's probe endpoint answers /metrics, /health/live and /health/ready."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from domain.stages import StageResult
from domain.statuses import OperationStatus
from infra.bootstrap.probes_server import serve_probes
from infra.devservices.ports import free_port
from infra.metrics import METRICS, Metrics


def test_every_metric_is_named_by_prometheus_conventions() -> None:
    families = list(Metrics().registry.collect())
    assert families
    for family in families:
        assert family.name.startswith("strategies_"), family.name
        assert family.documentation, family.name
        if family.type == "counter":
            # prometheus_client keeps a counter's family name without its _total suffix.
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return found or 0.0


def test_a_stage_call_counts_its_chunk_its_result_and_the_operation_it_ended() -> None:
    metrics = Metrics()
    done = StageResult(uuid4(), 0, OperationStatus.SETTLED, {}, participants=500)
    with metrics.stage_call("settle", "settle_chunk") as seen:
        seen.append(done)
    replay = StageResult(uuid4(), 1, OperationStatus.SETTLED, {}, replayed=True, participants=500)
    with metrics.stage_call("settle", "settle_chunk") as seen:
        seen.append(replay)
    with pytest.raises(RuntimeError), metrics.stage_call("check", "check_chunk"):
        raise RuntimeError("conflict after every retry")
    with metrics.stage_call("other", "strategy") as seen:  # the API's calls are not counted
        seen.append(done)
    calls = "strategies_stage_calls_total"
    assert value(metrics, calls, stage="settle", call="settle_chunk", result="done") == 1
    assert value(metrics, calls, stage="settle", call="settle_chunk", result="replayed") == 1
    assert value(metrics, calls, stage="check", call="check_chunk", result="error") == 1
    assert value(metrics, "strategies_stage_traders_total", stage="settle") == 500
    assert value(metrics, "strategies_operations_ended_total", status="settled") == 1
    assert (
        value(
            metrics,
            "strategies_stage_call_duration_seconds_count",
            stage="settle",
            call="settle_chunk",
        )
        == 2
    )
    assert b"strategies_stage_calls_total" in metrics.render()


async def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_a_workers_probe_endpoint_answers_metrics_liveness_and_readiness() -> None:
    reasons = ["no partition assigned yet: strategies.credit-check-requested/credit-check"]

    async def readiness() -> str:
        return reasons[0]

    port = free_port()
    server = await serve_probes("127.0.0.1", port, readiness)
    try:
        assert await get(port, "/health/live") == (200, b'{"status":"ok","reason":""}')
        status, body = await get(port, "/health/ready")
        assert status == 503 and b"no partition assigned yet" in body
        reasons[0] = ""
        assert (await get(port, "/health/ready"))[0] == 200
        status, body = await get(port, "/metrics?x=1")
        assert status == 200 and body == METRICS.render()[: len(body)]
        assert (await get(port, "/nope"))[0] == 404
        assert (await get(port, "/metrics", "POST"))[0] == 405
    finally:
        server.close()
        await server.wait_closed()
