"""The participant part of an Operation request, validated whole before anything is written."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from domain.codes import code_problem
from domain.errors import DomainError, FieldError, ParticipantsInvalidError
from domain.money import floor_to, parse_decimal


@dataclass(frozen=True)
class Limits:
    """Configurable request limits (spec §11.19)."""

    max_participants: int = 10_000
    max_allocations: int = 20


@dataclass(frozen=True)
class ParticipantOrder:
    """One participant of a request: the fiat amount is absent for rebalance and liquidation."""

    code: str
    amount: Decimal | None = None
    auto_rebalance: bool = False

    def as_dict(self) -> dict[str, str | bool]:
        data: dict[str, str | bool] = {"participant_code": self.code}
        if self.amount is not None:
            data["amount"] = str(self.amount)
        data["auto_rebalance"] = self.auto_rebalance
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, str | bool]) -> ParticipantOrder:
        amount = data.get("amount")
        return cls(
            code=str(data["participant_code"]),
            amount=Decimal(str(amount)) if amount is not None else None,
            auto_rebalance=bool(data.get("auto_rebalance", False)),
        )


def parse_funded_participants(
    raw: object, *, currency_precision: int, limits: Limits
) -> tuple[ParticipantOrder, ...]:
    """Participants with a fiat `amount` (enroll, top-up, partial-sell)."""
    entries = _entries(raw, limits)
    errors: list[FieldError] = []
    orders: list[ParticipantOrder] = []
    for index, entry in enumerate(entries):
        path = f"participants[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(FieldError(path, "must be an object"))
            continue
        code = _code(entry.get("participant_code"), path, errors)
        amount = _amount(entry.get("amount"), f"{path}.amount", currency_precision, errors)
        flag = entry.get("auto_rebalance", False)
        if not isinstance(flag, bool):
            errors.append(FieldError(f"{path}.auto_rebalance", "must be true or false"))
            flag = False
        if code is not None and amount is not None:
            orders.append(ParticipantOrder(code, amount, flag))
    return _checked(orders, errors)


def parse_named_participants(raw: object, *, limits: Limits) -> tuple[ParticipantOrder, ...]:
    """Participants named by code only (rebalance override, liquidation): strings or objects."""
    entries = _entries(raw, limits)
    errors: list[FieldError] = []
    orders: list[ParticipantOrder] = []
    for index, entry in enumerate(entries):
        path = f"participants[{index}]"
        value = entry.get("participant_code") if isinstance(entry, Mapping) else entry
        code = _code(value, path if isinstance(entry, str) else f"{path}.participant_code", errors)
        if code is not None:
            orders.append(ParticipantOrder(code))
    return _checked(orders, errors)


def _entries(raw: object, limits: Limits) -> Sequence[object]:
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        raise ParticipantsInvalidError(
            "participants must be a non-empty list",
            errors=(FieldError("participants", "must be a non-empty list"),),
        )
    if len(raw) > limits.max_participants:
        raise ParticipantsInvalidError(
            f"at most {limits.max_participants} participants are allowed per request "
            f"(got {len(raw)}); split the request",
            errors=(FieldError("participants", f"at most {limits.max_participants} entries"),),
        )
    return raw


def _code(raw: object, path: str, errors: list[FieldError]) -> str | None:
    problem = code_problem(raw)
    if problem is not None:
        errors.append(FieldError(path, f"participant_code {problem}"))
        return None
    assert isinstance(raw, str)
    return raw


def _amount(raw: object, path: str, precision: int, errors: list[FieldError]) -> Decimal | None:
    if raw is None:
        errors.append(FieldError(path, "is required"))
        return None
    if not isinstance(raw, str):
        errors.append(FieldError(path, 'must be a decimal string such as "100.50"'))
        return None
    try:
        amount = parse_decimal(raw, path)
    except DomainError as refused:
        errors.extend(refused.errors)  # names this path: not a number, not finite, too large
        return None
    if amount <= 0:
        errors.append(FieldError(path, "must be greater than 0"))
        return None
    if amount != floor_to(amount, precision):
        errors.append(FieldError(path, f"has more than {precision} decimals"))
        return None
    return amount


def _checked(
    orders: list[ParticipantOrder], errors: list[FieldError]
) -> tuple[ParticipantOrder, ...]:
    seen: set[str] = set()
    for order in orders:
        if order.code in seen:
            errors.append(FieldError("participants", f"{order.code} appears more than once"))
        seen.add(order.code)
    if errors:
        shown = "; ".join(f"{e.field} {e.message}" for e in errors[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise ParticipantsInvalidError(
            f"participants are invalid: {shown}{more}", errors=tuple(errors)
        )
    return tuple(orders)
