"""The names of every lifecycle, exactly as the spec spells them (§3, §11)."""

from __future__ import annotations

from enum import StrEnum


class OperationType(StrEnum):
    ENROLLMENT = "enrollment"
    TOP_UP = "top_up"
    PARTIAL_SELL = "partial_sell"
    REBALANCE = "rebalance"
    LIQUIDATION = "liquidation"

    @property
    def buys_from_float(self) -> bool:
        return self in (OperationType.ENROLLMENT, OperationType.TOP_UP)


class StrategyStatus(StrEnum):
    """An extension (the spec has no Strategy status): whether its model can be traded."""

    ACTIVE = "active"
    NEEDS_ADJUSTMENT = "needs_adjustment"


class OperationStatus(StrEnum):
    VALIDATING = "validating"
    PRICING = "pricing"
    SETTLING = "settling"
    SETTLED = "settled"
    SKIPPED = "skipped"
    FAILED = "failed"
    #: Extension (issue 19): the platform cancelled it before its prices were locked.
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (
            OperationStatus.SETTLED,
            OperationStatus.SKIPPED,
            OperationStatus.FAILED,
            OperationStatus.CANCELLED,
        )


class OperationReason(StrEnum):
    NONE = ""
    NO_EXECUTIONS = "no_executions"
    ALL_REJECTED = "all_rejected"
    ALL_SKIPPED = "all_skipped"
    PARTIAL_SUCCESS = "partial_success"
    PRICING_FAILED = "pricing_failed"
    EXECUTION_FAILED = "execution_failed"
    CANCELLED_BY_PLATFORM = "cancelled_by_platform"


class TraderStatus(StrEnum):
    #: Opened by the hold of its first enrollment; not visible until that enrollment settles.
    PENDING = "pending"
    ACTIVE = "active"
    LIQUIDATED = "liquidated"


class Reason(StrEnum):
    """Why an Execution was rejected or skipped (spec §11.6, plus `within_tolerance`)."""

    INSUFFICIENT_BALANCE = "insufficient_balance"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    INSTRUMENT_INELIGIBLE = "instrument_ineligible"
    PARTICIPANT_INELIGIBLE = "participant_ineligible"
    CONCURRENT_HOLD = "concurrent_hold"
    TRADER_NOT_FOUND = "trader_not_found"
    TRADER_ALREADY_EXISTS = "trader_already_exists"
    TRADER_NOT_ACTIVE = "trader_not_active"
    DUST = "dust"
    #: Extension: a rebalance with a drift tolerance skips Traders already within it.
    WITHIN_TOLERANCE = "within_tolerance"
    PRICING_FAILED = "pricing_failed"
    EXECUTION_FAILED = "execution_failed"
    CANCELLED_BY_PLATFORM = "cancelled_by_platform"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"
