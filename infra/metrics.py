"""Prometheus metrics (issue 20): one registry per process, named by Prometheus conventions
(`strategies_` prefix, units in the name, `_total` counters).

Each process exposes its own: `strategies serve` at `/metrics` (admin token), a `worker` on
`STRATEGIES_METRICS_PORT` (`infra/bootstrap/probes_server.py`). Prometheus scrapes every
process, so nothing here is shared between processes (no multiprocess mode to set up, no
files to clean): each series carries its process's `instance` label. Three kinds:

- **events counted where they happen**: HTTP requests, the stage calls of the pipeline
  (`Engine.call`), the Operations a stage call ended, webhook attempts, command results;
- **state read from the database** every few seconds (`infra.bootstrap.gauges`: Operations
  by type and status, chunks in flight, events waiting for the relay and the read models,
  webhook deliveries by status, float available): the same figures in every process that
  reads them, so a dashboard takes the max, not the sum;
- **state of the process itself**, read at the same time: the consumer lag of the Kafka
  partitions it holds and its database pools' connections, which a dashboard sums.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from domain.stages import StageResult

#: Seconds: from a 1 ms read to a 10-minute million-Trader pricing.
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The process's metrics, on a registry of its own (tests make fresh ones)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.http_requests = Counter(
            "strategies_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ("route", "method", "status"),
            registry=registry,
        )
        self.http_duration = Histogram(
            "strategies_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ("route", "method"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.stage_duration = Histogram(
            "strategies_stage_call_duration_seconds",
            "Time of one call into the domain by a pipeline stage (check_chunk, lock_prices, "
            "settle_chunk...), conflicts retried included, by stage and call.",
            ("stage", "call"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.stage_calls = Counter(
            "strategies_stage_calls_total",
            "Calls into the domain by pipeline stages, by stage, call and result (done, "
            "replayed: found done already, error).",
            ("stage", "call", "result"),
            registry=registry,
        )
        self.stage_traders = Counter(
            "strategies_stage_traders_total",
            "Traders a chunk's check or settlement went through (rate() gives Traders per "
            "second per stage).",
            ("stage",),
            registry=registry,
        )
        self.operations_ended = Counter(
            "strategies_operations_ended_total",
            "Operations this process ended (the stage call that made them terminal), by "
            "terminal status.",
            ("status",),
            registry=registry,
        )
        self.operations = Gauge(
            "strategies_operations",
            "Operations in the read models, by type and status (read every few seconds).",
            ("type", "status"),
            registry=registry,
        )
        self.relay_lag = Gauge(
            "strategies_relay_lag_events",
            "Events in the store the outbox relay has not published yet.",
            registry=registry,
        )
        self.projection_lag = Gauge(
            "strategies_projection_lag_events",
            "Events in the store the read models have not applied yet.",
            registry=registry,
        )
        self.webhook_deliveries = Gauge(
            "strategies_webhook_deliveries",
            "Webhook deliveries by status (pending, delivered, dead).",
            ("status",),
            registry=registry,
        )
        self.chunks_in_flight = Gauge(
            "strategies_chunks_in_flight",
            "Chunks of running Operations handed to a stage and not through it yet, by stage "
            "(check: of validating Operations; settle: of settling ones).",
            ("stage",),
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "strategies_consumer_lag_messages",
            "Records of a topic partition a consumer group has not committed yet (end offset "
            "minus committed offset), by group, topic and partition.",
            ("group", "topic", "partition"),
            registry=registry,
        )
        self.float_available = Gauge(
            "strategies_float_available",
            "Float a platform has left to buy with, by platform and currency (in the "
            "currency's units; a metric, not a ledger: the read models hold the exact figure).",
            ("platform", "currency"),
            registry=registry,
        )
        self.db_pool_connections = Gauge(
            "strategies_db_pool_connections",
            "Connections of this process's database pools, by pool and state (in_use, idle).",
            ("pool", "state"),
            registry=registry,
        )
        self.webhook_attempts = Counter(
            "strategies_webhook_attempts_total",
            "Webhook delivery attempts this process made, by outcome (delivered, retry: "
            "failed and scheduled again, dead: failed for the last time).",
            ("outcome",),
            registry=registry,
        )
        self.command_results = Counter(
            "strategies_command_results_total",
            "Records of the command topic handled, by outcome (accepted, replayed, rejected, "
            "dead_letter).",
            ("outcome",),
            registry=registry,
        )

    @contextmanager
    def stage_call(self, stage: str, call: str) -> Iterator[list[object]]:
        """Time one call into the domain; the caller puts its result in the yielded list (a
        `StageResult` also counts its chunk's Traders and, when it ended its Operation, the
        Operation). Calls outside the stages (the API's) are not counted."""
        if stage == "other":
            yield []
            return
        seen: list[object] = []
        started = perf_counter()
        result = "error"
        try:
            yield seen
            result = "done"
            outcome = seen[0] if seen else None
            if isinstance(outcome, StageResult):
                if outcome.replayed:
                    result = "replayed"
                else:
                    self.stage_traders.labels(stage).inc(outcome.participants)
                    if outcome.status.terminal:
                        self.operations_ended.labels(outcome.status.value).inc()
        finally:
            self.stage_duration.labels(stage, call).observe(perf_counter() - started)
            self.stage_calls.labels(stage, call, result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


#: The process's metrics.
METRICS = Metrics()
