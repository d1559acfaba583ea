"""Which request a piece of work belongs to, for the operators' logs and traces (issue 20):
kept on an Operation's `Requested` event, so that every stage task the relay derives from
the Operation can carry it. No rule reads it, and histories written before it replay without it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestTrace:
    #: The id on the log lines of the request or command record (X-Request-ID, say).
    correlation_id: str | None = None
    #: The W3C trace context of the span that made the request, when traced.
    traceparent: str | None = None


UNTRACED = RequestTrace()
