"""Money and quantities on Decimal, with the rounding rules of the business in one place.

Rounding rule (why): quantities a Trader receives round *down*, so a buy never costs more than
its budget; fiat a Trader pays rounds *up* and fiat a Trader receives rounds *down*, so rounding
never moves value from the house (venue, float) to a participant. The spec (§11.10) proposed
half-even for notionals; half-even lets a Trader gain up to half a minor unit per leg, which the
"rounding never creates money" invariant forbids, so the direction is always against the
participant and bounded by one minor unit per leg.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import ParamSpec, TypeVar

from domain.errors import AmountInvalidError, FieldError

ZERO = Decimal(0)
#: Amounts stay below a quadrillion: a fuzzed "1e26" could not even be rounded to a minor unit.
MAX_WHOLE_DIGITS = 15
#: The context every calculation on money and quantities runs in. Python's default keeps 28
#: significant digits: a 15-digit amount bought at 18 decimals (an instrument may be listed
#: with precision 18) needs 29 or more, and `quantize` then raised InvalidOperation in the
#: credit check, a task retried forever. 100 digits hold any product of an amount, a price
#: and a quantity exactly, and a quotient far finer than the finest grid (1e-18), so rounding
#: to a grid happens only where the business rounds. Anything inexact beyond that traps.
ARITHMETIC = Context(
    prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)

P = ParamSpec("P")
R = TypeVar("R")
C = TypeVar("C", bound=type)


def exact(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` in `ARITHMETIC` (and restore the caller's context afterwards)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with localcontext(ARITHMETIC):
            return fn(*args, **kwargs)

    return run


def exact_methods(cls: C) -> C:
    """Class decorator: every public method `cls` defines runs in `ARITHMETIC`."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member):
            setattr(cls, name, exact(member))
    return cls


@functools.lru_cache(maxsize=64)
def unit(precision: int) -> Decimal:
    """The smallest step at `precision` decimals: 2 -> 0.01, 8 -> 0.00000001, 0 -> 1.

    Cached: it is asked for on every rounding of every leg (Decimals are immutable)."""
    return Decimal(1).scaleb(-precision)


def floor_to(value: Decimal, precision: int) -> Decimal:
    return value.quantize(unit(precision), rounding=ROUND_FLOOR)


def ceil_to(value: Decimal, precision: int) -> Decimal:
    return value.quantize(unit(precision), rounding=ROUND_CEILING)


#: The only way a decimal string may be written: ASCII digits, a point with digits after it,
#: nothing else (`str.isdigit` and `\d` would let Arabic-Indic or fullwidth digits through).
_UNSIGNED = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SIGNED = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def parse_decimal(raw: object, field: str, *, signed: bool = False) -> Decimal:
    """Turn a JSON decimal string into a Decimal, or say which field is wrong.

    Only `123` or `123.45` in ASCII digits (and a leading `-` where `signed`): no `+`, no
    exponent, no `1_000`, no `1.` or `.5`, no surrounding spaces, no other script's digits, and
    no JSON number (a float has already lost the exact value the caller meant). Python's
    Decimal reads all of those, and a platform's own systems may read them differently; one
    strict form means every way in (HTTP, Kafka, CLI, admin) agrees on every amount.
    """
    if isinstance(raw, Decimal):  # already parsed by the domain itself
        value = raw
    elif isinstance(raw, str) and (_SIGNED if signed else _UNSIGNED).fullmatch(raw):
        value = Decimal(raw)
    else:
        example = '"-1.25"' if signed else '"100.50"'
        raise AmountInvalidError(
            f"{field} must be a decimal string of ASCII digits such as {example}, got "
            f"{_shown(raw)}",
            errors=(FieldError(field, f"must be a decimal string such as {example}"),),
        )
    if not value.is_finite():
        raise AmountInvalidError(
            f"{field} must be a finite number", errors=(FieldError(field, "must be finite"),)
        )
    if value and value.adjusted() >= MAX_WHOLE_DIGITS:
        raise AmountInvalidError(
            f"{field} is too large: at most {MAX_WHOLE_DIGITS} digits before the decimal point",
            errors=(FieldError(field, f"must be below 1e{MAX_WHOLE_DIGITS}"),),
        )
    return value


def _shown(raw: object, limit: int = 40) -> str:
    """A refused value as it may be echoed back: its repr, cut short."""
    text = repr(raw)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True, order=True)
class Money:
    """An amount of one fiat currency, always on that currency's minor-unit grid."""

    amount: Decimal
    currency: str

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot mix {self.currency} and {other.currency}")

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


@dataclass(frozen=True, order=True)
class Quantity:
    """An amount of one asset, on that asset's precision grid."""

    amount: Decimal
    asset: str

    def __str__(self) -> str:
        return f"{self.amount} {self.asset}"
