"""The commands: one type per mutation, built at each way in (HTTP route, Kafka record) and
handled by `Trading.handle`.

A command keeps its body as asked (the HTTP model dumped once, or the record's `body`): the
request fingerprint hashes exactly that, so a replay matches across HTTP and Kafka and across
releases. The body's content (weights, amounts, codes, limits) is checked once, by the
service, after the replay check and the Strategy's lookup: amounts are checked against the
Strategy's currency and instruments against the catalogue, and a replay must answer what
it made even if the limits changed since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from domain.errors import FieldError, InvalidRequestError
from domain.fingerprint import request_fingerprint
from domain.statuses import OperationType


@dataclass(frozen=True)
class CreateStrategy:
    body: Mapping[str, Any]
    name: ClassVar[str] = "create_strategy"

    def fingerprint(self) -> str:
        return request_fingerprint(self.name, "", self.body)


@dataclass(frozen=True)
class OperationCommand:
    """A request for an Operation on one Strategy; the subclass names its type."""

    strategy_id: UUID
    body: Mapping[str, Any]
    name: ClassVar[str]
    type: ClassVar[OperationType]

    def fingerprint(self) -> str:
        return request_fingerprint(self.type.value, str(self.strategy_id), self.body)


@dataclass(frozen=True)
class Enroll(OperationCommand):
    name = "enroll"
    type = OperationType.ENROLLMENT


@dataclass(frozen=True)
class TopUp(OperationCommand):
    name = "top_up"
    type = OperationType.TOP_UP


@dataclass(frozen=True)
class PartialSell(OperationCommand):
    name = "partial_sell"
    type = OperationType.PARTIAL_SELL


@dataclass(frozen=True)
class Rebalance(OperationCommand):
    name = "rebalance"
    type = OperationType.REBALANCE


@dataclass(frozen=True)
class Liquidate(OperationCommand):
    name = "liquidate"
    type = OperationType.LIQUIDATION


@dataclass(frozen=True)
class UpdateTrader:
    trader_id: UUID
    auto_rebalance: bool
    name: ClassVar[str] = "update_trader"

    def fingerprint(self) -> str:
        return request_fingerprint(
            self.name, str(self.trader_id), {"auto_rebalance": self.auto_rebalance}
        )


@dataclass(frozen=True)
class SetModel:
    """A new version of a Strategy's model (its stored target allocations)."""

    strategy_id: UUID
    body: Mapping[str, Any]
    name: ClassVar[str] = "set_model"

    def fingerprint(self) -> str:
        return request_fingerprint(self.name, str(self.strategy_id), self.body)


@dataclass(frozen=True)
class SetPolicy:
    """A new version of a Strategy's rebalancing policy."""

    strategy_id: UUID
    body: Mapping[str, Any]
    name: ClassVar[str] = "set_policy"

    def fingerprint(self) -> str:
        return request_fingerprint(self.name, str(self.strategy_id), self.body)


@dataclass(frozen=True)
class RunPolicy:
    """The scheduler's run of a Strategy's policy for one calendar period, at the venue's
    indicative `prices` as of `now`. Not a way in for platforms: no route or topic builds it.

    Its fingerprint is the Strategy, the period and the policy version only: a restarted
    scheduler that finds other prices (so other drifted Traders) meets the period's first
    run as a replay, never as a second run."""

    strategy_id: UUID
    period: str
    policy_version: int
    prices: Mapping[str, Decimal]
    now: datetime
    name: ClassVar[str] = "run_policy"

    def fingerprint(self) -> str:
        body = {"period": self.period, "policy_version": self.policy_version}
        return request_fingerprint(self.name, str(self.strategy_id), body)


@dataclass(frozen=True)
class CancelOperation:
    """The platform cancels an Operation before its prices are locked (an extension)."""

    operation_id: UUID
    name: ClassVar[str] = "cancel_operation"

    def fingerprint(self) -> str:
        return request_fingerprint(self.name, str(self.operation_id), {})


#: A preview's page of participants: the lists' bounds (`projections.queries`).
PREVIEW_DEFAULT_SIZE = 50
PREVIEW_MAX_SIZE = 200
PREVIEW_MAX_PAGE = 1_000_000_000


@dataclass(frozen=True)
class PreviewOperation:
    """What `operation` would do if it were requested now (`Trading.preview`): not a
    mutation, so no request id is claimed and nothing is written. `page` and `size` choose
    the participants shown; `summary_only` shows none."""

    operation: OperationCommand
    summary_only: bool = False
    page: int = 1
    size: int = PREVIEW_DEFAULT_SIZE
    name: ClassVar[str] = "preview"


#: Every mutation; `OperationCommand` stands for its five subclasses.
Command = (
    CreateStrategy
    | OperationCommand
    | UpdateTrader
    | SetModel
    | SetPolicy
    | RunPolicy
    | CancelOperation
)

OPERATION_COMMANDS: dict[str, type[OperationCommand]] = {
    kind.name: kind for kind in (Enroll, TopUp, PartialSell, Rebalance, Liquidate)
}


def operation_command(
    kind: OperationType, strategy_id: UUID, body: Mapping[str, Any]
) -> OperationCommand:
    """The command asking for an Operation of `kind`."""
    for command in OPERATION_COMMANDS.values():
        if command.type is kind:
            return command(strategy_id, body)
    raise ValueError(f"no command asks for a {kind.value} Operation")


def build_command(
    name: str,
    *,
    strategy_id: UUID | None,
    trader_id: UUID | None,
    body: Mapping[str, Any],
) -> Command:
    """A command from its parts as a record carries them (name, target ids, JSON body); a
    missing target or flag is refused with the field to fix."""
    if name == CreateStrategy.name:
        return CreateStrategy(body)
    if name == CancelOperation.name:
        return CancelOperation(_operation_id(body.get("operation_id")))
    if name == UpdateTrader.name:
        flag = body.get("auto_rebalance")
        if trader_id is None or not isinstance(flag, bool):
            raise InvalidRequestError(
                "update_trader needs trader_id and body.auto_rebalance (true or false)",
                errors=(FieldError("auto_rebalance", "must be true or false"),),
            )
        return UpdateTrader(trader_id, flag)
    # The commands on one Strategy: an Operation's, a new version of its model or policy.
    kind: type[OperationCommand] | type[SetModel] | type[SetPolicy] | None = (
        SetModel if name == SetModel.name else SetPolicy if name == SetPolicy.name else None
    ) or OPERATION_COMMANDS.get(name)
    if kind is None:
        raise ValueError(f"unknown command {name!r}")
    if strategy_id is None:
        raise InvalidRequestError(
            f"{name} needs strategy_id",
            errors=(FieldError("strategy_id", "is required"),),
        )
    return kind(strategy_id, body)


def _operation_id(raw: object) -> UUID:
    """A command body's `operation_id`: a UUID in its canonical text form."""
    try:
        if isinstance(raw, str) and len(raw) == 36:
            return UUID(raw)
    except ValueError:
        pass
    raise InvalidRequestError(
        "cancel_operation needs body.operation_id, the Operation's id",
        errors=(FieldError("operation_id", "must be a UUID"),),
    )


def build_preview(strategy_id: UUID | None, body: Mapping[str, Any]) -> PreviewOperation:
    """A preview from a command record's parts: `body` is `{"type": <an Operation command's
    name>, "body": <that request's body>, "summary_only", "page", "size"}`; each bad part is
    refused with the field to fix."""
    if strategy_id is None:
        raise InvalidRequestError(
            "preview needs strategy_id", errors=(FieldError("strategy_id", "is required"),)
        )
    name = body.get("type")
    kind = OPERATION_COMMANDS.get(name) if isinstance(name, str) else None
    if kind is None:
        names = ", ".join(OPERATION_COMMANDS)
        raise InvalidRequestError(
            f"preview needs body.type, one of {names}",
            errors=(FieldError("type", f"must be one of {names}"),),
        )
    request = body.get("body", {})
    if not isinstance(request, dict):
        raise InvalidRequestError(
            "preview's body.body is the request's body, a JSON object",
            errors=(FieldError("body", "must be an object"),),
        )
    summary_only = body.get("summary_only", False)
    if not isinstance(summary_only, bool):
        raise InvalidRequestError(
            "summary_only must be true or false",
            errors=(FieldError("summary_only", "must be true or false"),),
        )
    page = _bounded_int(body.get("page", 1), "page", PREVIEW_MAX_PAGE)
    size = _bounded_int(body.get("size", PREVIEW_DEFAULT_SIZE), "size", PREVIEW_MAX_SIZE)
    return PreviewOperation(kind(strategy_id, request), summary_only, page, size)


def _bounded_int(raw: object, name: str, most: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= most:
        raise InvalidRequestError(
            f"{name} must be a whole number from 1 to {most}",
            errors=(FieldError(name, f"must be from 1 to {most}"),),
        )
    return raw
