"""What the operator dashboard shows (issue 20), as one snapshot: the latest Operations with
their progress per stage, webhook health with the dead letters, float and lags.

The composition root fills it (`api.deps.OperatorView`, `infra.bootstrap.operator_view`);
the dashboard routes only render it, so the API never reads the write side on its own.
"""

from __future__ import annotations

from pydantic import BaseModel


class StageProgress(BaseModel):
    """One stage's chunks: `done` of `total` are through it."""

    stage: str
    done: int
    total: int

    @property
    def percent(self) -> int:
        return 100 if self.total == 0 else round(100 * self.done / self.total)


class OperationView(BaseModel):
    id: str
    platform_id: str
    strategy_id: str
    type: str
    status: str
    status_reason: str
    participant_count: int
    #: approved, rejected, skipped, settled (cancelled) Executions so far, as the API shows.
    counts: dict[str, int]
    #: check, then settlement; empty while the write side has not planned the chunks.
    stages: list[StageProgress]
    #: "status: reason" -> excluded Executions.
    exclusions: dict[str, int]
    #: asset -> the locked quote (price, side, quote_id, expires_at...).
    locked_prices: dict[str, dict[str, str]]
    #: asset -> what the house carries after the blocks (the Operation's `Reconciled`).
    residual: dict[str, str]
    created_at: str
    updated_at: str


class WebhookHealth(BaseModel):
    pending: int
    delivered: int
    dead: int
    #: pending after at least one failed attempt
    retrying: int
    #: attempts beyond each delivery's first
    retries: int


class DeadLetter(BaseModel):
    id: str
    platform_id: str
    subscription_id: str
    url: str
    payload_type: str
    object_id: str
    attempts: int
    last_status_code: int | None
    last_error: str
    last_attempt_at: str | None


class Figure(BaseModel):
    """One series of a gauge: its labels and value."""

    labels: dict[str, str]
    value: float


class Snapshot(BaseModel):
    taken_at: str
    operations: list[OperationView]
    #: None when the deliveries could not be read (no table yet)
    webhooks: WebhookHealth | None
    dead_letters: list[DeadLetter]
    #: `strategies_float_available` {platform, currency}
    float_available: list[Figure]
    #: `strategies_consumer_lag_messages` {group, topic, partition}
    consumer_lag: list[Figure]
    relay_lag: float
    projection_lag: float
