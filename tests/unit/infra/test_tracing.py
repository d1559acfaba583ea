"""Trace context and correlation ids across the bus (`infra.tracing`): what a way in records,
the headers that carry it, and what a consumer makes of them: log lines bound, a span that is
a child of the sender's. Spans are recorded by the SDK's own tracer into memory."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from infra import tracing
from infra.logging import current_correlation_id, get_logger
from infra.settings import Settings
from infra.tracing import (
    CORRELATION_HEADER,
    TRACEPARENT_HEADER,
    current_trace,
    described,
    handling,
    serving_http,
    trace_headers,
)
from tests.log_capture import json_log_lines

UPSTREAM_TRACE = "0af7651916cd43dd8448eb211c80319c"
UPSTREAM = f"00-{UPSTREAM_TRACE}-b7ad6b7169203331-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """This module's spans recorded in memory; the process's global provider is untouched."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("tests"))
    yield exporter
    provider.shutdown()


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    with json_log_lines() as buffer:
        yield buffer


def finished(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


def test_a_consumer_binds_the_headers_correlation_id_to_its_log_lines(lines: io.StringIO) -> None:
    log = get_logger("tests.tracing")
    with handling({CORRELATION_HEADER: "req-42"}, "credit-check"):
        log.info("credit.checked", chunk=3)
    log.info("after")
    during, after = (json.loads(line) for line in lines.getvalue().splitlines())
    assert during["correlation_id"] == "req-42"
    assert "correlation_id" not in after  # bound for the record's handling only


def test_a_header_that_is_no_fit_id_is_not_believed() -> None:
    with handling({CORRELATION_HEADER: "bad id\nwith a newline"}, "x", fallback_id="k-1"):
        assert current_correlation_id() == "k-1"
    with handling({CORRELATION_HEADER: "x" * 500}, "x"):
        fresh = current_correlation_id()
    assert fresh is not None and len(fresh) == 36  # a fresh uuid4


def test_the_stage_span_is_a_child_of_the_senders_trace(spans: InMemorySpanExporter) -> None:
    headers = {TRACEPARENT_HEADER: UPSTREAM, CORRELATION_HEADER: "req-1"}
    with handling(headers, "pricing", attributes={"strategies.operation_id": "op"}):
        pass
    span = finished(spans, "pricing")
    assert format(span.context.trace_id, "032x") == UPSTREAM_TRACE
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert span.kind is SpanKind.CONSUMER
    assert span.attributes == {
        "strategies.operation_id": "op",
        "strategies.correlation_id": "req-1",
    }


def test_what_a_request_records_leads_its_stage_tasks_into_its_trace(
    spans: InMemorySpanExporter, lines: io.StringIO
) -> None:
    """HTTP request -> recorded on the Operation -> record headers -> stage task: one trace."""
    with serving_http({}, "POST") as request, handling({}, "unused", fallback_id="req-9"):
        recorded = current_trace()
        described(request, "POST", "/strategies/{strategy_id}/enroll", 202)
    assert recorded.correlation_id == "req-9"
    headers = trace_headers(recorded)
    assert headers == {CORRELATION_HEADER: "req-9", TRACEPARENT_HEADER: recorded.traceparent}
    with handling(headers, "credit-check"):
        get_logger("tests.tracing").info("credit.checked")
    http = finished(spans, "POST /strategies/{strategy_id}/enroll")
    check = finished(spans, "credit-check")
    assert http.kind is SpanKind.SERVER
    assert http.attributes is not None and http.attributes["http.response.status_code"] == 202
    assert check.context.trace_id == http.context.trace_id
    line = json.loads(lines.getvalue().splitlines()[-1])
    assert line["correlation_id"] == "req-9"
    assert line["trace_id"] == format(http.context.trace_id, "032x")


def test_a_failing_handler_marks_its_span_failed(spans: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), handling({}, "execution"):
        raise RuntimeError("database away")
    span = finished(spans, "execution")
    assert not span.status.is_ok
    assert span.events[0].name == "exception"


def test_untraced_the_callers_context_still_travels_through() -> None:
    """No SDK installed (OTEL off): no span is recorded, but the sender's trace context and
    the correlation id are handed on to what the handler records."""
    with handling({TRACEPARENT_HEADER: UPSTREAM, CORRELATION_HEADER: "c-1"}, "command"):
        recorded = current_trace()
    assert recorded.correlation_id == "c-1"
    assert recorded.traceparent is not None and UPSTREAM_TRACE in recorded.traceparent
    assert trace_headers(current_trace()) == {}  # outside any work: nothing to carry


def test_tracing_stays_off_without_an_endpoint() -> None:
    assert tracing.start_tracing(Settings(), "strategies-test") is False
    tracing.stop_tracing()  # nothing to stop


def test_the_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        Settings(otel_exporter_otlp_endpoint="collector:4318")
    assert Settings(otel_exporter_otlp_endpoint=" http://c:4318 ").otel_exporter_otlp_endpoint == (
        "http://c:4318"
    )
