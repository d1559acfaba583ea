"""The ledger view of a settlement: balanced postings, and the invariants audits check.

Every settled Execution is a set of postings between four kinds of account: the Trader's
positions and cash, the platform float, and the venue (the house side of every fill). A
settlement is correct only if, per currency or asset, its postings sum to zero: value moves,
it is never made or lost. These functions are shared by the domain's tests and the audit tools.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID

from domain.errors import InvariantViolation
from domain.money import ZERO
from domain.statuses import Side

VENUE = "venue"
FLOAT = "float"


def trader_account(trader_id: UUID) -> str:
    return f"trader:{trader_id}"


@dataclass(frozen=True)
class Posting:
    account: str
    unit: str  # an asset code or the quoted currency
    amount: Decimal


def settlement_postings(
    trader_id: UUID,
    currency: str,
    instructions: Iterable[Mapping[str, str]],
    funded: Decimal,
    paid_out: Decimal,
) -> list[Posting]:
    """The postings of one settled Execution, from what its `Settled` event recorded."""
    trader = trader_account(trader_id)
    postings: list[Posting] = []
    if funded:
        postings += [Posting(FLOAT, currency, -funded), Posting(trader, currency, funded)]
    for instruction in instructions:
        asset = instruction["underlying_currency"]
        quantity = Decimal(instruction["quantity"])
        notional = Decimal(instruction["notional"])
        sign = 1 if instruction["side"] == Side.BUY.value else -1
        postings += [
            Posting(trader, asset, sign * quantity),
            Posting(VENUE, asset, -sign * quantity),
            Posting(trader, currency, -sign * notional),
            Posting(VENUE, currency, sign * notional),
        ]
    if paid_out:
        postings += [Posting(trader, currency, -paid_out), Posting(FLOAT, currency, paid_out)]
    return postings


def imbalances(postings: Iterable[Posting]) -> dict[str, Decimal]:
    """Per unit, what the postings fail to net to zero (empty when balanced)."""
    sums: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for posting in postings:
        sums[posting.unit] += posting.amount
    return {unit: total for unit, total in sums.items() if total != 0}


def balances(postings: Iterable[Posting]) -> dict[tuple[str, str], Decimal]:
    """Per (account, unit), the net of the postings."""
    sums: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for posting in postings:
        sums[(posting.account, posting.unit)] += posting.amount
    return dict(sums)


def check_balanced(subject: str, postings: Iterable[Posting]) -> list[InvariantViolation]:
    return [
        InvariantViolation("value_conserved", subject, f"{unit} nets to {total}, not 0")
        for unit, total in sorted(imbalances(postings).items())
    ]


def check_uniform_prices(
    subject: str,
    locked: Mapping[str, Decimal],
    instructions_by_trader: Mapping[str, Iterable[Mapping[str, str]]],
) -> list[InvariantViolation]:
    """Every instruction of every Trader carries the Operation's locked price for its asset."""
    violations = []
    for trader, instructions in instructions_by_trader.items():
        for instruction in instructions:
            asset = instruction["underlying_currency"]
            if Decimal(instruction["price"]) != locked.get(asset):
                violations.append(
                    InvariantViolation(
                        "uniform_price",
                        subject,
                        f"{trader} got {asset} at {instruction['price']}, "
                        f"locked {locked.get(asset)}",
                        (trader,),
                    )
                )
    return violations


def check_non_negative(
    subject: str, positions: Mapping[str, Decimal], cash: Decimal
) -> list[InvariantViolation]:
    negatives = {a: q for a, q in positions.items() if q < 0}
    if cash < 0:
        negatives["cash"] = cash
    return [
        InvariantViolation("non_negative", subject, f"{unit} is {value}")
        for unit, value in sorted(negatives.items())
    ]
