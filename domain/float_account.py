"""The platform's float account per quoted currency (novated funding, spec §9).

Enrollments and top-ups are paid from it; sale proceeds and liquidations are paid into it.
An Operation writes the account twice at most, whatever its number of chunks: once when it
starts pricing, reserving what its buyers draw in request order (§11.12) with one hold per
chunk, so no two Operations (nor two chunks) can spend the same float twice; and once when it
ends, settling (or, failed, releasing) every hold it placed in one event. Its chunks settle in
parallel without touching the account, so they never race on its version; the Operation keeps
each chunk's debit and credit until the last one is in. Only the Operation that placed a hold
may settle or release it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import ids
from domain.codes import check_reference
from domain.errors import (
    AmountInvalidError,
    FieldError,
    FloatInsufficientError,
    HoldNotOwnedError,
    IdempotencyConflictError,
)
from domain.money import ZERO, floor_to

if TYPE_CHECKING:
    from collections.abc import Mapping


def hold_prefix(operation_id: UUID) -> str:
    """What every hold key of one Operation starts with."""
    return f"{operation_id}:"


def hold_key(operation_id: UUID, chunk: int) -> str:
    return f"{hold_prefix(operation_id)}{chunk}"


class FloatAccount(Aggregate):
    @staticmethod
    def create_id(platform_id: str, currency: str) -> UUID:
        return ids.float_account_id(platform_id, currency)

    @event("Opened")
    def __init__(self, platform_id: str, currency: str, precision: int) -> None:
        self.platform_id = platform_id
        self.currency = currency
        self.precision = precision
        self.balance = ZERO
        self.holds: dict[str, Decimal] = {}

    @property
    def held(self) -> Decimal:
        return sum(self.holds.values(), ZERO)

    @property
    def available(self) -> Decimal:
        return self.balance - self.held

    def deposit(self, amount: Decimal, reference: str) -> None:
        check_reference(reference)
        if amount <= 0 or amount != floor_to(amount, self.precision):
            raise AmountInvalidError(
                f"a deposit must be positive with at most {self.precision} decimals",
                errors=(FieldError("amount", "must be positive on the currency's minor unit"),),
            )
        self._deposited(amount, reference)

    @event("Deposited")
    def _deposited(self, amount: Decimal, reference: str) -> None:
        self.balance += amount

    def hold(self, operation_id: UUID, chunks: dict[int, Decimal]) -> None:
        """Reserve, per chunk of the Operation, what its approved buyers draw (one event)."""
        wanted = {
            hold_key(operation_id, index): amount
            for index, amount in sorted(chunks.items())
            if amount > 0 and hold_key(operation_id, index) not in self.holds
        }
        total = sum(wanted.values(), ZERO)
        if total > self.available:
            raise FloatInsufficientError(
                f"float {self.currency} has {self.available} available, {total} needed"
            )
        if wanted:
            self._reserved(wanted)

    @event("Reserved")
    def _reserved(self, holds: dict[str, Decimal]) -> None:
        self.holds.update(holds)

    @event("Held")
    def _held(self, key: str, amount: Decimal) -> None:
        """Kept so histories written before `Reserved` replay (one hold per chunk checked)."""
        self.holds[key] = amount

    def settle_operation(
        self, operation_id: UUID, moves: Mapping[int, tuple[Decimal, Decimal]]
    ) -> None:
        """Settle an Operation's chunks at once: `moves` holds each chunk's (debit, credit).
        Every hold of the Operation is released, a chunk named or not, and the balance moves
        by the credits less the debits; a chunk may debit at most its own hold. One event,
        keyed by hold key: a chunk that neither held nor moved anything is left out.

        The account keeps no record of settled Operations (it would grow for ever): that this
        runs once is the Operation's barrier, saved in the same atomic write."""
        debits: dict[str, Decimal] = {}
        credits: dict[str, Decimal] = {}
        for chunk, (debit, credit) in sorted(moves.items()):
            key = hold_key(operation_id, chunk)
            reserved = self.holds.get(key, ZERO)
            if debit > reserved:
                raise HoldNotOwnedError(
                    f"chunk {key} may debit at most its hold of {reserved}, not {debit}"
                )
            if debit or credit or key in self.holds:
                debits[key], credits[key] = debit, credit
        for key in self._holds_of(operation_id):
            debits.setdefault(key, ZERO)
            credits.setdefault(key, ZERO)
        if debits:
            self._operation_settled(operation_id, debits, credits)

    @event("OperationSettled")
    def _operation_settled(
        self, operation_id: UUID, debits: dict[str, Decimal], credits: dict[str, Decimal]
    ) -> None:
        for key in debits:
            self.holds.pop(key, None)
        self.balance += sum(credits.values(), ZERO) - sum(debits.values(), ZERO)

    def release_operation(self, operation_id: UUID) -> None:
        """A failed Operation's end: every hold it placed is released, nothing is paid."""
        keys = self._holds_of(operation_id)
        if keys:
            self._operation_released(operation_id, keys)

    @event("OperationReleased")
    def _operation_released(self, operation_id: UUID, keys: list[str]) -> None:
        for key in keys:
            self.holds.pop(key, None)

    def _holds_of(self, operation_id: UUID) -> list[str]:
        prefix = hold_prefix(operation_id)
        return sorted(key for key in self.holds if key.startswith(prefix))

    # Per-chunk settlement, written before an Operation settled the float once at its end:
    # no command records these any more, but histories holding them must still replay.
    @event("Settled")
    def _settled(self, key: str, debit: Decimal, credit: Decimal) -> None:
        self.holds.pop(key, None)
        self.balance += credit - debit

    @event("Released")
    def _released(self, key: str) -> None:
        del self.holds[key]


class FloatDeposit(Aggregate):
    """A deposit's reference, used once per float account (the wire's idempotency key).

    Saved in the same atomic write as the `FloatAccount.Deposited` it stands for, so the same
    deposit sent twice (a retried admin call, a double click) credits once: the second meets
    the first (a version conflict if both race) and is a replay, or a conflict when it asks
    for another amount. One small aggregate per deposit rather than a set of references on
    the account: the account is loaded by every Operation's pricing, and years of references
    would make each of those loads heavier. Deposits recorded before this rule have no key.
    """

    @staticmethod
    def create_id(platform_id: str, currency: str, reference: str, amount: Decimal) -> UUID:
        del amount
        return ids.float_deposit_id(platform_id, currency, reference)

    @event("Recorded")
    def __init__(self, platform_id: str, currency: str, reference: str, amount: Decimal) -> None:
        self.platform_id = platform_id
        self.currency = currency
        self.reference = reference
        self.amount = amount

    def replay(self, amount: Decimal) -> None:
        """Accept the same deposit again (nothing to record); refuse another amount."""
        if amount != self.amount:
            raise IdempotencyConflictError(
                f"reference {self.reference!r} was already used for a deposit of "
                f"{self.amount} {self.currency}; use a new reference for a new deposit, and "
                "resend one only to retry the same deposit",
                errors=(FieldError("reference", "already used for another amount"),),
            )
