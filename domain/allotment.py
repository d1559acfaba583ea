"""Allotment: what each approved Trader trades at the locked prices, decided once, used twice.

The pricing stage allots every chunk to size each block order exactly: a block is the net of
the Traders' own rounded quantities, so the house carries nothing beyond what a venue's partial
fill leaves. The settlement stage allots its one chunk again and applies it. Both run the same
pure function on the same inputs, so they agree to the last unit.

The inputs are price-independent facts the credit check recorded: each approved participant's
order (its amount) and its Trader's holdings when the check placed the hold (nothing else can
change them while the Trader is held). At the locked prices, and in request order:
- buys (enrollment, top-up) draw their amount from the float only if the Operation's float
  reservation covered them (`float_approvals`); the others are rejected `insufficient_funds`;
- a partial sell that no longer covers its amount at the locked price is rejected whole
  (`insufficient_balance`), never paid less than it asked;
- a Trader left with only dust legs is skipped (`dust`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING
from uuid import UUID

from domain.calculators import Market, partial_sell_plan
from domain.catalogue import InstrumentCatalogue
from domain.credit import OperationTerms, Outcome, planned_legs
from domain.legs import Holdings, Leg
from domain.money import ZERO, exact_methods
from domain.pricing import BlockOrder
from domain.requests import ParticipantOrder
from domain.statuses import OperationType, Reason, Side

if TYPE_CHECKING:
    from domain.operation import Operation


@dataclass(frozen=True)
class Entry:
    """One participant the credit check approved, with its holdings as they were held."""

    order: ParticipantOrder
    holdings: Holdings = field(default_factory=Holdings)


@dataclass(frozen=True)
class Allotment:
    """One Trader's part at the locked prices: its legs and fiat moves, or why it has none."""

    code: str
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    legs: tuple[Leg, ...] = ()
    #: Fiat into the Trader from the float (buys), and out of it to the float (sells).
    funded: Decimal = ZERO
    paid_out: Decimal = ZERO

    @property
    def trades(self) -> bool:
        return self.outcome is Outcome.APPROVED


#: A chunk's entries as the pricing book keeps them: decoded, or packed (see `pack_entries`).
ChunkEntries = tuple[Entry, ...] | bytes
#: Books of more participants than this keep each chunk's entries packed: a million decoded
#: Entries (orders, holdings, their Decimals) weigh about 1 GB, packed a tenth of that.
PACK_ABOVE = 200_000


def pack_entries(entries: Iterable[Entry]) -> bytes:
    """The entries as compact JSON (Decimals as their exact strings)."""
    return json.dumps(
        [
            [
                e.order.code,
                None if e.order.amount is None else str(e.order.amount),
                e.order.auto_rebalance,
                [[asset, str(quantity)] for asset, quantity in e.holdings.positions.items()],
                str(e.holdings.cash),
            ]
            for e in entries
        ],
        separators=(",", ":"),
    ).encode()


def unpack_entries(packed: bytes) -> tuple[Entry, ...]:
    return tuple(
        Entry(
            ParticipantOrder(code, None if amount is None else Decimal(amount), auto),
            Holdings({asset: Decimal(q) for asset, q in positions}, Decimal(cash)),
        )
        for code, amount, auto, positions, cash in json.loads(packed)
    )


def entries_of(chunk: ChunkEntries) -> tuple[Entry, ...]:
    return unpack_entries(chunk) if isinstance(chunk, bytes) else chunk


PriceKey = tuple[tuple[str, Decimal], ...]


def _price_key(prices: Mapping[str, Decimal]) -> PriceKey:
    return tuple(sorted(prices.items()))


#: Participants whose allotments `AllottedChunks` keeps across Operations (about 1.1 KB
#: each): the latest Operation's are kept whatever its size (its book is decoded only up to
#: `PACK_ABOVE`), older ones only within this.
KEEP_ALLOTTED = 100_000


class AllottedChunks:
    """What pricing allotted at the locked prices, chunk by chunk, kept in this process for
    the settlement of those chunks to take instead of allotting them again.

    Taking them changes nothing but the time: they are `allot`'s result on the very inputs
    settlement would give it (the Operation's terms, cash buffer included, the chunk's
    approved entries as checked, its float budget, the locked prices), which a take checks
    before it hands them over. A chunk not kept here (a book too large to keep them, another
    process, a restart, an Operation dropped to stay within `limit` participants, oldest
    first) is allotted again, as it always was.
    """

    def __init__(self, limit: int = KEEP_ALLOTTED) -> None:
        self.limit = limit
        self._kept: dict[
            UUID, tuple[OperationTerms, PriceKey, dict[int, tuple[Decimal, list[Allotment]]]]
        ] = {}

    def keep(self, operation_id: UUID, book: PricingBook, prices: Mapping[str, Decimal]) -> None:
        allotted = book.allotted(prices)
        if allotted is None:
            return
        chunks = {i: (book.chunks[i][1], allotments) for i, allotments in allotted.items()}
        self._kept[operation_id] = (book.terms, _price_key(prices), chunks)
        while sum(self._sizes()) > self.limit and len(self._kept) > 1:
            del self._kept[next(iter(self._kept))]

    def take(
        self,
        operation_id: UUID,
        index: int,
        entries: Sequence[Entry],
        prices: Mapping[str, Decimal],
        budget: Decimal,
        terms: OperationTerms,
    ) -> list[Allotment] | None:
        """The chunk's allotments, once, if kept for exactly these inputs."""
        kept = self._kept.get(operation_id)
        if kept is None or kept[0] != terms or kept[1] != _price_key(prices):
            return None
        chunks = kept[2]
        found = chunks.pop(index, None)
        if not chunks:
            self._kept.pop(operation_id, None)
        if found is None or found[0] != budget:
            return None
        allotments = found[1]
        if [a.code for a in allotments] != [e.order.code for e in entries]:
            return None
        return allotments

    def _sizes(self) -> list[int]:
        # Snapshots (list() is one step under the GIL): settlement threads pop chunks
        # while a pricing step keeps another Operation's.
        return [
            sum(len(allotments) for _, allotments in list(chunks.values()))
            for _, _, chunks in list(self._kept.values())
        ]


def float_approvals(
    kind: OperationType, entries: Iterable[Entry], budget: Decimal
) -> tuple[list[bool], Decimal]:
    """Which buyers the float covers, first come first served in request order (§11.12): each
    in turn is approved if what is left covers its whole amount. Returns the flags and the
    total approved. Not a question of price: the reservation and every settlement agree."""
    if not kind.buys_from_float:
        return [True for _ in entries], ZERO
    flags, left = [], budget
    for entry in entries:
        draw = entry.order.amount or ZERO
        covered = draw <= left
        left -= draw if covered else ZERO
        flags.append(covered)
    return flags, budget - left


def float_budgets(
    kind: OperationType, chunks: Iterable[ChunkEntries], available: Decimal
) -> list[tuple[Decimal, Decimal]]:
    """The float reservation of an Operation, chunk by chunk in request order: per chunk,
    the budget it starts with (what earlier chunks left of `available`) and what its buyers
    hold of it (`float_approvals`). Pricing reserves exactly this; a preview reports it."""
    reserved, left = [], available
    for entries in chunks:
        _, held = float_approvals(kind, entries_of(entries), left)
        reserved.append((left, held))
        left -= held
    return reserved


def allot(
    terms: OperationTerms,
    entries: Sequence[Entry],
    market: Market,
    float_budget: Decimal = ZERO,
) -> list[Allotment]:
    """Every entry's Allotment at `market`'s (locked) prices, in request order."""
    flags, _ = float_approvals(terms.type, entries, float_budget)
    return [
        _allot(terms, entry, market) if covered else _rejected(entry, Reason.INSUFFICIENT_FUNDS)
        for entry, covered in zip(entries, flags, strict=True)
    ]


def _allot(terms: OperationTerms, entry: Entry, market: Market) -> Allotment:
    order, holdings = entry.order, entry.holdings
    kind = terms.type
    if kind is OperationType.PARTIAL_SELL:
        assert terms.allocations is not None and order.amount is not None
        plan = partial_sell_plan(order.amount, terms.allocations, holdings, market)
        if plan.skip:
            return Allotment(order.code, Outcome.SKIPPED, (Reason.DUST,))
        if plan.refusal is not None:
            return _rejected(entry, plan.refusal)
        return Allotment(order.code, Outcome.APPROVED, legs=plan.legs, paid_out=order.amount)
    legs = planned_legs(terms, order, holdings, market)
    if kind is OperationType.LIQUIDATION:
        if not legs and holdings.cash <= 0:
            return Allotment(order.code, Outcome.SKIPPED, (Reason.DUST,))
        proceeds = sum((leg.notional for leg in legs), ZERO)
        return Allotment(order.code, Outcome.APPROVED, legs=legs, paid_out=holdings.cash + proceeds)
    if not legs:
        return Allotment(order.code, Outcome.SKIPPED, (Reason.DUST,))
    funded = (order.amount or ZERO) if kind.buys_from_float else ZERO
    return Allotment(order.code, Outcome.APPROVED, legs=legs, funded=funded)


def _rejected(entry: Entry, reason: Reason) -> Allotment:
    return Allotment(entry.order.code, Outcome.REJECTED, (reason,))


def net_quantities(allotments: Iterable[Allotment]) -> dict[str, Decimal]:
    """Per asset, what the trading Traders buy minus what they sell (their exact net)."""
    net: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for allotment in allotments:
        for leg in allotment.legs:
            net[leg.asset] += leg.quantity if leg.side is Side.BUY else -leg.quantity
    return dict(net)


def block_orders(net: Mapping[str, Decimal]) -> dict[str, BlockOrder]:
    """One order per asset for the Traders' exact net; none where buys and sells cancel."""
    return {
        asset: BlockOrder(asset, Side.BUY if quantity > 0 else Side.SELL, abs(quantity))
        for asset, quantity in sorted(net.items())
        if quantity
    }


@exact_methods
@dataclass(frozen=True)
class PricingBook:
    """An Operation's approved participants, chunk by chunk with each chunk's float budget:
    what the pricing stage needs to size the blocks exactly at whatever prices it is quoted."""

    operation_id: UUID
    terms: OperationTerms
    catalogue: InstrumentCatalogue
    quoted_currency: str
    fiat_precision: int
    #: The assets that need a locked price.
    assets: tuple[str, ...]
    #: Each chunk's entries (packed in a large book: `PACK_ABOVE`) and float budget.
    chunks: tuple[tuple[ChunkEntries, Decimal], ...]
    #: Blocks already computed, by price set: discovery and the lock ask for the same ones.
    _seen: dict[PriceKey, dict[str, BlockOrder]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: The latest pass's allotments, chunk by chunk, under its price set (decoded books only).
    _latest: dict[PriceKey, dict[int, list[Allotment]]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: The Operation as the pricing step loaded (and reserved) it, and its version then: the
    #: lock takes it from here instead of loading it again, unless it changed since (a save
    #: that lost to a concurrent writer leaves it ahead of the store).
    operation: Operation | None = field(default=None, compare=False, repr=False)
    operation_version: int = field(default=-1, compare=False, repr=False)
    #: Per asset, the net of the approved Traders' legs as their credit check recorded it, at
    #: the Operation's indicative prices (`Operation.checked_net`); None if not recorded.
    checked_net: Mapping[str, Decimal] | None = field(default=None, compare=False, repr=False)

    def precisions(self) -> dict[str, int]:
        return {
            asset: self.catalogue.precision(asset, self.quoted_currency) for asset in self.assets
        }

    def market(self, prices: Mapping[str, Decimal]) -> Market:
        return Market(self.quoted_currency, self.fiat_precision, self.catalogue, prices)

    def _allotments(
        self, prices: Mapping[str, Decimal], kept: dict[int, list[Allotment]] | None = None
    ) -> Iterator[Allotment]:
        """Chunk by chunk, so a pass over a million Traders never holds their legs at once
        (unless `kept` asks for each chunk's allotments). Private: a generator runs in its
        consumer's decimal context, which `net` makes exact."""
        market = self.market(prices)
        for index, (entries, budget) in enumerate(self.chunks):
            allotments = allot(self.terms, entries_of(entries), market, budget)
            if kept is not None:
                kept[index] = allotments
            yield from allotments

    def net(self, prices: Mapping[str, Decimal]) -> dict[str, Decimal]:
        """The Traders' net at `prices`. A book small enough to be kept decoded also keeps
        the allotments of its latest pass, which settlement may take (`allotted`)."""
        if any(isinstance(entries, bytes) for entries, _ in self.chunks):
            return net_quantities(self._allotments(prices))
        kept: dict[int, list[Allotment]] = {}
        net = net_quantities(self._allotments(prices, kept))
        self._latest.clear()
        self._latest[_price_key(prices)] = kept
        return net

    def allotted(self, prices: Mapping[str, Decimal]) -> dict[int, list[Allotment]] | None:
        """Each chunk's allotments at `prices`, if the book's latest pass was at them."""
        return self._latest.get(_price_key(prices))

    def checked_blocks(self) -> dict[str, BlockOrder] | None:
        """The blocks at the indicative prices, from the nets the credit check recorded, when
        they are exactly what a pass over every Trader would find there: each chunk was
        checked at those prices and recorded its approved Traders' legs, which are their
        allotments there unless the float decides who buys (enrollment, top-up: the check
        cannot know who the float will cover). They size the first quotes without that pass
        (a minute for a million Traders); None when the pass is needed."""
        if self.checked_net is None or self.terms.type.buys_from_float:
            return None
        return block_orders(self.checked_net)

    def blocks(self, prices: Mapping[str, Decimal]) -> dict[str, BlockOrder]:
        key = _price_key(prices)
        if key not in self._seen:
            self._seen[key] = block_orders(self.net(prices))
        return dict(self._seen[key])
