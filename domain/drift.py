"""Drift: how far each Trader's weights are from the model, at given prices, and what it adds
up to over a Strategy (issue 18, `GET /strategies/{id}/drift` and the `drift` list filter).

A Trader's targets are the model less the policy's cash buffer (`buffered_targets`), and the
buffer is the target of its cash. At prices p its value is V = cash + sum(q * p), and for
each asset of the model or held, its gap is |q * p - t * V| (in money; its weight's gap
times V). Then:

- its **drift** is the largest asset gap / V: the largest |weight - target|. Cash is not an
  asset here, as in the policy's drift band;
- its **value out of line** is (sum of the asset gaps + the cash gap) / 2, that is
  V * sum|weight - target| / 2 with cash counted as a line: the value a rebalance moves
  (weights and targets both add up to 1, so what is over-weight equals what is short);
- it is **outside** a drift band by the scheduler's own rule (`policy_run.select_for_run`):
  an asset off by more than the band (on the edge is inside), or nothing but cash.

Every comparison is made on the gaps in money (`gap >= threshold * V`), never on a quotient:
multiplications are exact in `ARITHMETIC` as in PostgreSQL's numeric, so the list filter,
which computes the same in SQL, selects exactly the Traders this module says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

from domain.allocations import Allocations
from domain.errors import ConflictError
from domain.legs import Holdings
from domain.money import ZERO, exact, floor_to
from domain.policy import DriftBand
from domain.policy_run import buffered_targets

#: Decimal places a drift is shown with, rounded down: a Trader shown at 0.050000 has a
#: drift of at least 0.05, so a threshold of up to this many places selects what it shows.
DRIFT_PLACES = 6
_DRIFT_UNIT = Decimal(1).scaleb(-DRIFT_PLACES)
#: The absolute bands every summary counts Traders beyond (weight points).
SUMMARY_BANDS = (Decimal("0.01"), Decimal("0.02"), Decimal("0.05"), Decimal("0.10"))


class PricesUnknownError(ConflictError):
    """Raised when drift is asked of a Strategy whose model names an asset without any known
    indicative price yet (no Operation or policy run priced it)."""

    code = "prices_unknown"


class DriftBandRequiredError(ConflictError):
    """Raised when Traders outside the policy's drift band are asked for and the Strategy's
    policy has no band (or it has no policy)."""

    code = "drift_band_required"


@dataclass(frozen=True)
class Targets:
    """The weights a Trader should have: per asset (the model less the cash buffer) and in
    cash (the buffer)."""

    weights: Mapping[str, Decimal]
    cash: Decimal = ZERO

    @classmethod
    def of(cls, model: Allocations, cash_buffer: Decimal = ZERO) -> Targets:
        buffered = buffered_targets(model, cash_buffer)
        return cls({a.asset: a.weight for a in buffered}, cash_buffer)


@dataclass(frozen=True)
class TraderDrift:
    """One Trader valued at the prices: exact figures, in the quoted currency."""

    value: Decimal
    #: The largest |q * p - t * V| over the model's and the held assets.
    largest_gap: Decimal
    out_of_line: Decimal
    outside: bool

    @property
    def drift(self) -> Decimal:
        """The largest |weight - target|, exact to `ARITHMETIC`'s 100 digits (0 without value)."""
        return _ratio(self.largest_gap, self.value)

    def at_least(self, threshold: Decimal) -> bool:
        """drift >= threshold, decided without dividing."""
        return self.value > 0 and self.largest_gap >= threshold * self.value

    def beyond(self, band: Decimal) -> bool:
        """drift > band (on the edge is inside, as in a drift band)."""
        return self.value > 0 and self.largest_gap > band * self.value


@exact
def trader_drift(
    holdings: Holdings,
    prices: Mapping[str, Decimal],
    targets: Targets,
    band: DriftBand | None = None,
) -> TraderDrift | None:
    """The Trader's drift at `prices`; None when a held asset has no price. Without `band`
    (no policy band) it is never `outside`."""
    held = {a: q for a, q in holdings.positions.items() if q}
    if any(asset not in prices for asset in held):
        return None
    value = holdings.value(prices)
    if value <= 0:
        return TraderDrift(ZERO, ZERO, ZERO, outside=False)
    largest, total, outside = ZERO, abs(holdings.cash - targets.cash * value), False
    for asset in {*targets.weights, *held}:
        target = targets.weights.get(asset, ZERO)
        gap = abs(held.get(asset, ZERO) * prices.get(asset, ZERO) - target * value)
        largest = max(largest, gap)
        total += gap
        outside = outside or (band is not None and _breaks(band, gap, target, value))
    if band is not None and not held:
        outside = True  # only cash: a model asks it to be invested (the scheduler's rule)
    return TraderDrift(value, largest, total / 2, outside)


def _breaks(band: DriftBand, gap: Decimal, target: Decimal, value: Decimal) -> bool:
    if band.absolute is not None and gap > band.absolute * value:
        return True
    return band.relative is not None and gap > band.relative * target * value


def shown_drift(drift: Decimal) -> str:
    """A drift as the API shows it: `DRIFT_PLACES` decimals, rounded down."""
    return format(drift.quantize(_DRIFT_UNIT, rounding=ROUND_FLOOR), "f")


@exact
def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    return numerator / denominator if denominator else ZERO


@dataclass
class DriftSummary:
    """Drift over many Traders, added one at a time (a Strategy's Traders are streamed)."""

    bands: tuple[Decimal, ...] = SUMMARY_BANDS
    traders: int = 0
    unpriced: int = 0
    empty: int = 0
    out_of_line: Decimal = ZERO
    outside: int = 0
    beyond: dict[Decimal, int] = field(default_factory=dict)
    #: (largest gap, value) of the most drifted Trader: compared by cross-multiplying.
    _largest: tuple[Decimal, Decimal] = (ZERO, Decimal(1))

    @exact
    def add(self, drift: TraderDrift | None) -> None:
        if drift is None:
            self.unpriced += 1
            return
        if drift.value <= 0:
            self.empty += 1
            return
        self.traders += 1
        self.out_of_line += drift.out_of_line
        self.outside += drift.outside
        for band in self.bands:
            self.beyond[band] = self.beyond.get(band, 0) + drift.beyond(band)
        gap, value = self._largest
        if drift.largest_gap * value > gap * drift.value:
            self._largest = (drift.largest_gap, drift.value)

    def add_all(self, drifts: Iterable[TraderDrift | None]) -> None:
        for drift in drifts:
            self.add(drift)

    @property
    def largest_drift(self) -> Decimal:
        return _ratio(*self._largest)

    def value_out_of_line(self, precision: int) -> Decimal:
        """The sum of every Trader's exact value out of line, rounded down once to the
        currency's minor unit."""
        return floor_to(self.out_of_line, precision)

    def counts_beyond(self) -> dict[Decimal, int]:
        return {band: self.beyond.get(band, 0) for band in self.bands}
