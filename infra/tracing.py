"""Traces (issue 20): OpenTelemetry spans, exported only when `OTEL_EXPORTER_OTLP_ENDPOINT`
is set; correlation ids on log lines, always.

The way in (an HTTP request, a command record) opens a span and binds a correlation id.
Both are recorded on the Operation it requests (`domain.request_trace.RequestTrace` on
`Operation.Requested`), because the work that follows is not started by the request but by
the outbox relay reading the event store: the relay puts them on every record it publishes
for that Operation as the `traceparent` (W3C trace context) and `correlation_id` headers, and
each consumer `handling` a record binds the correlation id to its log lines and opens a span
whose parent is that trace context. So every stage task of one Operation, in any process,
is a span of the request's trace.

Setting up: `tracing(settings, service)` around a process's life (serve, every worker)
installs the SDK's provider with a batching OTLP/HTTP exporter, and flushes it on the way
out. Without the endpoint nothing is installed: the API's default tracer makes no span (it
hands on a valid parent it was given, so a caller's trace context still travels through
us), at the cost of a header parse per record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from domain.request_trace import RequestTrace
from infra.logging import acceptable_correlation_id, bind_correlation_id, current_correlation_id

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span
    from opentelemetry.util.types import AttributeValue

    from infra.settings import Settings

#: The record headers that carry one Operation's trace through the bus.
TRACEPARENT_HEADER = "traceparent"
CORRELATION_HEADER = "correlation_id"
#: Our span attribute for the correlation id, so that a trace finds its log lines.
CORRELATION_ATTRIBUTE = "strategies.correlation_id"

_PROPAGATOR = TraceContextTextMapPropagator()
# A proxy: it records once `start_tracing` installed a provider, and costs nothing before.
_tracer = trace.get_tracer("portfolio-strategies")
_provider: Any = None


def start_tracing(settings: Settings, service: str) -> bool:
    """Export this process's spans when the settings name a collector; True when they do.
    `service` names the process's role unless `OTEL_SERVICE_NAME` does."""
    global _provider
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint is None or _provider is not None:
        return False
    # Imported here: a process that does not trace never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name or service})
    )
    # The base URL's path, as the SDK itself builds it from the same variable.
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def stop_tracing() -> None:
    """Export the spans still batched, then stop (bounded by the exporter's timeout)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


@contextmanager
def tracing(settings: Settings, service: str) -> Iterator[None]:
    """`start_tracing` for the block's length; what was batched is exported on the way out."""
    start_tracing(settings, service)
    try:
        yield
    finally:
        stop_tracing()


def current_trace() -> RequestTrace:
    """The correlation id and trace context of the work in progress, to record on what it
    requests (nothing for what is neither bound nor traced)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return RequestTrace(current_correlation_id(), carrier.get(TRACEPARENT_HEADER))


def trace_headers(found: RequestTrace | None = None) -> dict[str, str]:
    """`found` (else the work in progress's) as record headers; none for what is unknown."""
    found = found or current_trace()
    headers = {}
    if found.correlation_id is not None:
        headers[CORRELATION_HEADER] = found.correlation_id
    if found.traceparent is not None:
        headers[TRACEPARENT_HEADER] = found.traceparent
    return headers


@contextmanager
def handling(
    headers: Mapping[str, str],
    name: str,
    *,
    fallback_id: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[Span]:
    """Handling one record: its `correlation_id` header (else `fallback_id`, else a fresh
    id) on every log line, and a consumer span whose parent is its `traceparent`. A header
    that is no fit id is not believed, as X-Request-ID is not over HTTP."""
    correlation_id = acceptable_correlation_id(headers.get(CORRELATION_HEADER))
    correlation_id = correlation_id or acceptable_correlation_id(fallback_id)
    with (
        bind_correlation_id(correlation_id) as bound,
        _tracer.start_as_current_span(
            name,
            context=_parent(headers),
            kind=SpanKind.CONSUMER,
            attributes={**(attributes or {}), CORRELATION_ATTRIBUTE: bound},
        ) as span,
    ):
        yield span


@contextmanager
def serving_http(headers: Mapping[str, str], method: str) -> Iterator[Span]:
    """One HTTP request's server span, child of the caller's `traceparent` if it sent one;
    `described` names it once the route is known. When the framework made one already
    (FastAPI does from 0.165 on, once a provider is installed, with spans of its own for
    the dependencies, the endpoint and the serialisation under it), that one: a request
    is one server span."""
    correlation = {CORRELATION_ATTRIBUTE: current_correlation_id() or ""}
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(correlation)  # now: it ends as the response's last byte goes
        yield current
        return
    with _tracer.start_as_current_span(
        method,
        context=_parent(headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, **correlation},
    ) as span:
        yield span


def described(span: Span, method: str, route: str, status: int) -> None:
    """Name the request's span by its route's template (never the raw path: ids), as the
    OpenTelemetry conventions do, with the status (nothing on a span that has ended: the
    framework's own, which it named itself)."""
    if not span.is_recording():
        return
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def _parent(headers: Mapping[str, str]) -> Context:
    """The trace context a record's (or request's) headers name; without one, the current
    context (an empty one, in a consumer), rather than none: an empty context would start a
    new trace under a span that is current."""
    return _PROPAGATOR.extract(headers, context=context_api.get_current())


def annotate(name: str, value: AttributeValue) -> None:
    """An attribute on the current span, for what only the handler knows (the action of an
    execution task, say); nothing when no span records."""
    trace.get_current_span().set_attribute(name, value)
