"""A preview: what an Operation request would do, decided by the real stages' own code.

`Trading.preview` plans the request as `Trading.handle` would (same validation, same scope,
same chunks) without saving anything, checks every participant with the credit check of
`domain.checking` (the function the check stage runs on a chunk), and hands the outcome here.
Here the float is reserved in request order exactly as pricing reserves it
(`allotment.float_budgets`) and every approved participant is allotted at the same prices
(`allotment.allot`, what pricing sizes the blocks from and settlement applies). So when the
prices do not move between the preview and the lock, the real run has the same legs and the
same exclusions, with the same reasons; a preview at other prices is the run at those prices.

What a preview cannot know: a write after it (another Operation holding a Trader, a deposit,
a participant's eligibility) and the locked prices (firm quotes pay the venue's spread).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from domain.allotment import Allotment, Entry, allot, block_orders, float_budgets, net_quantities
from domain.calculators import Market
from domain.credit import CreditDecision, OperationTerms, Outcome
from domain.legs import Leg
from domain.money import ZERO, exact
from domain.pricing import BlockOrder
from domain.statuses import OperationType, Reason, Side

#: Where a participant's outcome is decided in the real run: by the credit check (every
#: rule of `domain.credit`) or at pricing (float in request order, a partial sell that no
#: longer covers its amount, dust at the price).
AT_CHECK = "credit_check"
AT_PRICING = "pricing"


@dataclass(frozen=True)
class CheckedChunk:
    """One chunk's credit-check decisions, in request order, and its approved participants
    as pricing takes them (`domain.checking.approved_entry`)."""

    decisions: Sequence[CreditDecision]
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class ParticipantPreview:
    participant_code: str
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    decided_at: str = AT_CHECK
    legs: tuple[Leg, ...] = ()


@dataclass(frozen=True)
class AssetTotals:
    """One asset's gross moves over the participants who would trade, and the block order
    their net needs after internal netting (None: buys and sells cancel)."""

    asset: str
    bought: Decimal = ZERO
    paid: Decimal = ZERO
    sold: Decimal = ZERO
    received: Decimal = ZERO
    net: Decimal = ZERO
    block: BlockOrder | None = None


@dataclass(frozen=True)
class FloatPreview:
    """The platform's float for this request: `needed` is what every buyer the check would
    approve asks of it, `reserved` what pricing would hold of `available` in request order,
    `returned` what sales would pay into it."""

    currency: str
    available: Decimal
    needed: Decimal
    reserved: Decimal
    returned: Decimal

    @property
    def shortfall(self) -> Decimal:
        return self.needed - self.reserved


@dataclass(frozen=True)
class OperationPreview:
    strategy_id: UUID
    type: OperationType
    quoted_currency: str
    allocations: list[dict[str, str]] | None
    parameters: Mapping[str, str]
    prices: Mapping[str, Decimal]
    priced_at: datetime
    participants: tuple[ParticipantPreview, ...]
    totals: tuple[AssetTotals, ...]
    float: FloatPreview
    counts: Mapping[str, int] = field(default_factory=dict)
    reasons: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class PreviewTerms:
    """What a preview is about, besides its participants."""

    strategy_id: UUID
    terms: OperationTerms
    market: Market
    parameters: Mapping[str, str]
    priced_at: datetime
    float_available: Decimal


@exact
def preview_of(about: PreviewTerms, chunks: Sequence[CheckedChunk]) -> OperationPreview:
    """The preview of checked chunks: the float reserved over them in request order, every
    approved participant allotted at the market's prices, the totals of those who trade."""
    terms, market = about.terms, about.market
    buys = terms.type.buys_from_float
    reserved = (
        float_budgets(terms.type, [c.entries for c in chunks], about.float_available)
        if buys
        else [(ZERO, ZERO) for _ in chunks]
    )
    participants: list[ParticipantPreview] = []
    trading: list[Allotment] = []
    needed = ZERO
    for chunk, (budget, _) in zip(chunks, reserved, strict=True):
        # allot keeps the entries' order, which is the approved decisions' order.
        allotted = iter(
            zip(chunk.entries, allot(terms, chunk.entries, market, budget), strict=True)
        )
        for decision in chunk.decisions:
            if decision.outcome is not Outcome.APPROVED:
                code = decision.participant_code
                participants.append(ParticipantPreview(code, decision.outcome, decision.reasons))
                continue
            entry, allotment = next(allotted)
            needed += (entry.order.amount or ZERO) if buys else ZERO
            participants.append(_after_pricing(allotment))
            if allotment.trades:
                trading.append(allotment)
    counts = Counter(p.outcome.value for p in participants)
    reasons = Counter(r.value for p in participants for r in p.reasons)
    return OperationPreview(
        strategy_id=about.strategy_id,
        type=terms.type,
        quoted_currency=market.quoted_currency,
        allocations=terms.allocations.as_list() if terms.allocations else None,
        parameters=dict(about.parameters),
        prices=dict(market.prices),
        priced_at=about.priced_at,
        participants=tuple(participants),
        totals=_totals(terms, trading),
        float=FloatPreview(
            market.quoted_currency,
            about.float_available,
            needed,
            sum((held for _, held in reserved), ZERO),
            sum((a.paid_out for a in trading), ZERO),
        ),
        # A preview decides as the check does: `cancelled` is a cancellation's, never a check's.
        counts={o.value: counts.get(o.value, 0) for o in Outcome if o is not Outcome.CANCELLED},
        reasons=dict(sorted(reasons.items())),
    )


def _after_pricing(allotment: Allotment) -> ParticipantPreview:
    """An approved participant's outcome once allotted: trading with its legs, or excluded
    at pricing (the check approved it, so its reasons are pricing's)."""
    if allotment.trades:
        return ParticipantPreview(allotment.code, Outcome.APPROVED, (), AT_CHECK, allotment.legs)
    return ParticipantPreview(allotment.code, allotment.outcome, allotment.reasons, AT_PRICING)


def _totals(terms: OperationTerms, trading: Sequence[Allotment]) -> tuple[AssetTotals, ...]:
    moves: dict[str, dict[str, Decimal]] = {}
    allocated = list(terms.allocations.assets) if terms.allocations else []
    for asset in allocated:
        moves[asset] = dict.fromkeys(("bought", "paid", "sold", "received"), ZERO)
    for allotment in trading:
        for leg in allotment.legs:
            tally = moves.setdefault(
                leg.asset, dict.fromkeys(("bought", "paid", "sold", "received"), ZERO)
            )
            if leg.side is Side.BUY:
                tally["bought"] += leg.quantity
                tally["paid"] += leg.notional
            else:
                tally["sold"] += leg.quantity
                tally["received"] += leg.notional
    net = net_quantities(trading)
    blocks = block_orders(net)
    return tuple(
        AssetTotals(
            asset,
            m["bought"],
            m["paid"],
            m["sold"],
            m["received"],
            net.get(asset, ZERO),
            blocks.get(asset),
        )
        for asset, m in sorted(moves.items())
    )
