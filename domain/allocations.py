"""Allocations: the target mix an Operation carries, validated before anything is written."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from domain.catalogue import InstrumentCatalogue
from domain.codes import asset_problem
from domain.errors import AllocationInvalidError, DomainError, FieldError
from domain.money import ZERO, parse_decimal

ONE = Decimal(1)


@dataclass(frozen=True)
class Allocation:
    asset: str
    weight: Decimal

    def as_dict(self) -> dict[str, str]:
        return {"underlying_currency": self.asset, "weight": str(self.weight)}


@dataclass(frozen=True)
class Allocations:
    """A validated, ordered list of (asset, weight) whose weights sum to exactly 1."""

    items: tuple[Allocation, ...]

    def __iter__(self) -> Iterator[Allocation]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def assets(self) -> tuple[str, ...]:
        return tuple(a.asset for a in self.items)

    def weight_of(self, asset: str) -> Decimal:
        return self._weights.get(asset, ZERO)

    @functools.cached_property
    def _weights(self) -> dict[str, Decimal]:
        # Asked for every asset of every Trader of a rebalance: a dict, not a scan.
        weights: dict[str, Decimal] = {}
        for allocation in self.items:
            weights.setdefault(allocation.asset, allocation.weight)
        return weights

    def as_list(self) -> list[dict[str, str]]:
        return [a.as_dict() for a in self.items]

    @classmethod
    def from_list(cls, raw: Sequence[Mapping[str, str]]) -> Allocations:
        """Rebuild from stored events: trusted, already validated."""
        return cls(tuple(Allocation(r["underlying_currency"], Decimal(r["weight"])) for r in raw))


def parse_allocations(
    raw: object,
    *,
    quoted_currency: str,
    catalogue: InstrumentCatalogue,
    max_assets: int,
) -> Allocations:
    """Validate a request's allocations against the spec's rules and the catalogue.

    Every problem is collected, so one 400 tells the client everything wrong at once.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        raise AllocationInvalidError(
            "allocations must be a non-empty list of {underlying_currency, weight}",
            errors=(FieldError("allocations", "must be a non-empty list"),),
        )
    errors: list[FieldError] = []
    if len(raw) > max_assets:
        errors.append(FieldError("allocations", f"at most {max_assets} entries are allowed"))
    items: list[Allocation] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        path = f"allocations[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(FieldError(path, "must be an object"))
            continue
        asset = entry.get("underlying_currency")
        if not isinstance(asset, str) or not asset:
            errors.append(FieldError(f"{path}.underlying_currency", "is required"))
            continue
        if (problem := asset_problem(asset)) is not None:
            errors.append(FieldError(f"{path}.underlying_currency", problem))
            continue
        weight = _weight(entry.get("weight"), f"{path}.weight", errors)
        errors.extend(_asset_problems(asset, path, quoted_currency, catalogue, seen))
        seen.add(asset)
        if weight is not None:
            items.append(Allocation(asset, weight))
    if not errors and sum((a.weight for a in items), Decimal(0)) != ONE:
        total = sum((a.weight for a in items), Decimal(0))
        errors.append(
            FieldError("allocations", f"weights must sum to exactly 1 (they sum to {total})")
        )
    if errors:
        raise AllocationInvalidError(
            "allocations are invalid: " + "; ".join(f"{e.field} {e.message}" for e in errors),
            errors=tuple(errors),
        )
    return Allocations(tuple(items))


def _weight(raw: object, path: str, errors: list[FieldError]) -> Decimal | None:
    if not isinstance(raw, str):
        errors.append(FieldError(path, 'must be a decimal string such as "0.25"'))
        return None
    try:
        weight = parse_decimal(raw, path)
    except DomainError:
        errors.append(FieldError(path, "is not a decimal number"))
        return None
    if not Decimal(0) < weight <= ONE:
        errors.append(FieldError(path, "must be greater than 0 and at most 1"))
        return None
    return weight


def _asset_problems(
    asset: str, path: str, quoted_currency: str, catalogue: InstrumentCatalogue, seen: set[str]
) -> list[FieldError]:
    field = f"{path}.underlying_currency"
    if asset in seen:
        return [FieldError(field, f"{asset} appears more than once")]
    if asset == quoted_currency:
        return [FieldError(field, f"cannot allocate to the quoted currency {quoted_currency}")]
    instrument = catalogue.find(asset, quoted_currency)
    if instrument is None:
        return [FieldError(field, f"{asset}/{quoted_currency} is not a listed instrument")]
    if not instrument.tradable:
        return [FieldError(field, f"{instrument.symbol} is {instrument.status.value}")]
    return []
