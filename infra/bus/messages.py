"""The messages of the pipeline, as pydantic models (JSON on the wire, Decimals as strings)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class CreditCheckRequested(Message):
    operation_id: UUID
    chunk: int = Field(ge=0)


class PricingRequested(Message):
    operation_id: UUID


class ExecutionRequested(Message):
    operation_id: UUID
    action: Literal["place_blocks", "settle", "release"]
    chunk: int | None = Field(default=None, ge=0)


class DomainEventMessage(Message):
    """One domain event as published on `strategies.events` (keyed by aggregate id)."""

    position: int
    aggregate_id: UUID
    aggregate_type: str
    aggregate_version: int
    type: str
    timestamp: datetime
    data: dict[str, Any]


CommandName = Literal[
    "create_strategy",
    "enroll",
    "top_up",
    "partial_sell",
    "rebalance",
    "liquidate",
    "update_trader",
    "set_model",
    "set_policy",
    "cancel_operation",
    "preview",
]


class Command(Message):
    """A command on `strategies.commands`; the record key is the request id (UUID v4) and the
    `platform` header names the platform it acts for."""

    command: CommandName
    strategy_id: UUID | None = None
    trader_id: UUID | None = None
    body: dict[str, Any] = Field(default_factory=dict)


class ErrorDetail(Message):
    field: str
    message: str


class CommandError(Message):
    code: str
    message: str
    errors: list[ErrorDetail] = Field(default_factory=list)


class CommandResult(Message):
    """The outcome of one command, on `strategies.command-results` keyed by request id."""

    request_id: str
    platform: str
    command: str
    outcome: Literal["accepted", "replayed", "rejected"]
    resource_type: Literal["strategy", "operation", "trader", "preview"] | None = None
    resource: dict[str, Any] | None = None
    error: CommandError | None = None


class DeadLetter(Message):
    """A record that could not be understood, with why, so nothing is silently dropped."""

    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None
    headers: dict[str, str]
    value: str
