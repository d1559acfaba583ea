"""Typed business errors.

Every refusal of a command is a `DomainError` with a stable machine-readable `code` (what API
clients and command-topic consumers switch on) and a message a person can act on. Validation
errors may name several bad fields at once in `errors`, so a client fixes its request in one go.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FieldError:
    """One bad field of a request: where it is (a JSON-pointer-like path) and what is wrong."""

    field: str
    message: str


class DomainError(Exception):
    """Raised when a command breaks a rule of the business."""

    code = "domain_error"

    def __init__(self, message: str, *, errors: tuple[FieldError, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class InvalidRequestError(DomainError):
    """Raised when a request's content is invalid; `errors` lists each bad field."""

    code = "invalid_request"


class AllocationInvalidError(InvalidRequestError):
    """Raised when allocations break a rule (weights, duplicates, unknown or disabled assets)."""

    code = "invalid_allocations"


class AmountInvalidError(InvalidRequestError):
    """Raised when an amount is not a positive decimal within the currency's minor unit."""

    code = "invalid_amount"


class ParticipantsInvalidError(InvalidRequestError):
    """Raised when the participant list is empty, too long or repeats a participant."""

    code = "invalid_participants"


class CurrencyUnsupportedError(InvalidRequestError):
    """Raised when a quoted currency is not one the engine knows how to account in."""

    code = "unsupported_currency"


class WebhookUrlInvalidError(InvalidRequestError):
    """Raised when a webhook URL is not https to a public host (or breaks the URL rule)."""

    code = "invalid_webhook_url"


class NotFoundError(DomainError):
    """Raised when a command names something that does not exist."""

    code = "not_found"


class StrategyNotFoundError(NotFoundError):
    """Raised when a strategy id is unknown (or belongs to another platform)."""

    code = "strategy_not_found"


class TraderNotFoundError(NotFoundError):
    """Raised when a trader id is unknown (or belongs to another platform)."""

    code = "trader_not_found"


class OperationNotFoundError(NotFoundError):
    """Raised when an operation id is unknown."""

    code = "operation_not_found"


class InstrumentNotFoundError(NotFoundError):
    """Raised when an asset is not in the instrument catalogue for a currency."""

    code = "instrument_not_found"


class ConflictError(DomainError):
    """Raised when a command conflicts with the current state of an aggregate."""

    code = "conflict"


class IllegalTransitionError(ConflictError):
    """Raised when a lifecycle is asked to move along an edge it does not have."""

    code = "illegal_transition"


class TraderHeldError(ConflictError):
    """Raised when a trader held by one operation is asked to take part in another."""

    code = "concurrent_hold"


class HoldNotOwnedError(ConflictError):
    """Raised when an operation tries to release or settle a hold it does not own."""

    code = "hold_not_owned"


class FloatInsufficientError(ConflictError):
    """Raised when the platform float cannot cover a hold or a debit."""

    code = "insufficient_funds"


class ModelRequiredError(ConflictError):
    """Raised when a request needs the Strategy's model and it has none."""

    code = "model_required"


class PolicyRunNotDueError(ConflictError):
    """Raised when an automatic run is asked for a period that is not due, has run already,
    or under a policy version that is no longer the current one."""

    code = "policy_run_not_due"


class StrategyNeedsAdjustmentError(ConflictError):
    """Raised when an automatic run is asked of a Strategy whose model cannot be traded."""

    code = "strategy_needs_adjustment"


class OperationNotCancellableError(ConflictError):
    """Raised when an Operation is asked to cancel after its prices were locked (or once it
    failed or ended): the message names its current status."""

    code = "operation_not_cancellable"


class IdempotencyConflictError(ConflictError):
    """Raised when a request id is reused with a different request body."""

    code = "idempotency_conflict"


@dataclass(frozen=True)
class InvariantViolation:
    """One broken invariant found by an audit check: which rule, on what, and why."""

    rule: str
    subject: str
    detail: str
    ids: tuple[str, ...] = field(default=())
