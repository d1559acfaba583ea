"""Drift on the read side: a Strategy's summary (`GET /strategies/{id}/drift`) and the
`drift` filters of the Traders list, at the latest indicative prices (`projections.prices`).

The arithmetic is the domain's (`domain.drift`). The summary streams the Strategy's active
Traders through a server-side cursor in batches and adds each batch up in a thread, so
100,000 Traders are never in memory at once nor hold the event loop. The list filter is the
same arithmetic in SQL over the jsonb positions, with the prices and targets as parameters
(numeric, exact): it is a WHERE condition, so the list's pages, counts and order are the
list's own. Both compare gaps in money, never quotients, so they select the same Traders.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson

from domain.allocations import Allocations
from domain.catalogue import fiat_precision
from domain.drift import (
    DriftBandRequiredError,
    DriftSummary,
    PricesUnknownError,
    Targets,
    shown_drift,
    trader_drift,
)
from domain.errors import FieldError, ModelRequiredError, StrategyNotFoundError
from domain.legs import Holdings
from domain.policy import DriftBand, Policy, parse_policy
from projections.filters import Clause
from projections.prices import PRICES, PriceRow
from projections.representations import rfc3339
from projections.schema import DEFAULT_SCHEMA, row_from_record, rows_from_records
from projections.strategies import STRATEGIES, StrategyRow
from projections.traders import TRADERS, plain_decimal

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

#: Traders read (and added up in one thread hop) at a time.
BATCH = 5_000
ACTIVE = "active"

# The SQL twin of `domain.drift.trader_drift`, on a traders row (`positions`, `cash`):
# {0} prices and {1} targets as JSON objects (asset -> decimal string).
_VALUED = (
    "(SELECT cash + COALESCE(sum(h.value::numeric * ({0}::text::jsonb ->> h.key)::numeric), 0)"
    " AS v, COALESCE(bool_and({0}::text::jsonb ? h.key), true) AS priced"
    " FROM jsonb_each_text(positions) AS h) AS val"
)
_KEYS = (
    "(SELECT jsonb_object_keys(positions) UNION SELECT jsonb_object_keys({1}::text::jsonb)) AS a(k)"
)
_GAP = (
    "abs(COALESCE((positions ->> a.k)::numeric, 0) * COALESCE(({0}::text::jsonb ->> a.k)"
    "::numeric, 0) - COALESCE(({1}::text::jsonb ->> a.k)::numeric, 0) * val.v)"
)
#: {2}: the threshold.
DRIFT_AT_LEAST = (
    f"EXISTS (SELECT 1 FROM {_VALUED}, {_KEYS}"
    f" WHERE val.priced AND val.v > 0 AND {_GAP} >= {{2}}::numeric * val.v)"
)
#: {2}: the band's absolute, {3} its relative (either may be null). Only cash is outside.
OUTSIDE_BAND = (
    f"EXISTS (SELECT 1 FROM {_VALUED}, {_KEYS}"
    " WHERE val.priced AND val.v > 0 AND (positions = '{{}}'::jsonb"
    f" OR ({{2}}::numeric IS NOT NULL AND {_GAP} > {{2}}::numeric * val.v)"
    f" OR ({{3}}::numeric IS NOT NULL AND {_GAP} > {{3}}::numeric"
    " * COALESCE(({1}::text::jsonb ->> a.k)::numeric, 0) * val.v)))"
)


@dataclass(frozen=True)
class DriftContext:
    """What drift is measured against: the Strategy's model less its buffer, its policy's
    band, and the latest prices of its currency."""

    strategy: StrategyRow
    model_version: int
    targets: Targets
    policy_version: int | None
    band: DriftBand | None
    prices: dict[str, PriceRow]

    @property
    def price_values(self) -> dict[str, Decimal]:
        return {asset: row.price for asset, row in self.prices.items()}

    def outside_clause(self, field: str = "drift") -> Clause:
        if self.band is None:
            raise DriftBandRequiredError(
                f"Strategy {self.strategy.id}'s policy has no drift band",
                errors=(FieldError(field, "the Strategy's policy has no drift band"),),
            )
        band = (self.band.absolute, self.band.relative)
        return Clause(OUTSIDE_BAND, (*self._json(), *band))

    def at_least_clause(self, threshold: Decimal) -> Clause:
        return Clause(DRIFT_AT_LEAST, (*self._json(), threshold))

    def _json(self) -> tuple[str, str]:
        prices = {a: plain_decimal(p) for a, p in self.price_values.items()}
        targets = {a: plain_decimal(w) for a, w in self.targets.weights.items()}
        return orjson.dumps(prices).decode(), orjson.dumps(targets).decode()


async def drift_context(
    pool: asyncpg.Pool,
    platform_id: str,
    strategy_id: UUID,
    *,
    schema: str = DEFAULT_SCHEMA,
    field: str = "strategy_id",
) -> DriftContext:
    """The Strategy's model, policy and prices; refused when drift cannot be measured yet:
    no such Strategy for this platform (404), no model, or a model asset never priced (409).
    `field`: the request field a refusal names."""
    record = await pool.fetchrow(
        f"SELECT {STRATEGIES.selected()} FROM {STRATEGIES.qualified(schema)}"
        " WHERE platform_id = $1 AND id = $2",
        platform_id,
        strategy_id,
    )
    if record is None:
        raise StrategyNotFoundError(f"strategy {strategy_id} does not exist")
    strategy: StrategyRow = row_from_record(StrategyRow, record)
    if strategy.model is None:
        raise ModelRequiredError(
            f"Strategy {strategy_id} has no model to measure drift against",
            errors=(FieldError(field, "the Strategy has no model"),),
        )
    model = Allocations.from_list(strategy.model["allocations"])
    policy = _policy(strategy.policy)
    records = await pool.fetch(
        f"SELECT {PRICES.selected()} FROM {PRICES.qualified(schema)}"
        " WHERE platform_id = $1 AND quoted_currency = $2",
        platform_id,
        strategy.quoted_currency,
    )
    prices = {row.asset: row for row in rows_from_records(PriceRow, records)}
    missing = [asset for asset in model.assets if asset not in prices]
    if missing:
        raise PricesUnknownError(
            f"no indicative price known yet for {', '.join(missing)}"
            f"/{strategy.quoted_currency}: run an Operation first",
            errors=tuple(FieldError(f"prices.{a}", "no price known yet") for a in missing),
        )
    return DriftContext(
        strategy,
        int(strategy.model["version"]),
        Targets.of(model, policy.cash_buffer if policy else Decimal(0)),
        None if strategy.policy is None else int(strategy.policy["version"]),
        None if policy is None else policy.drift_band,
        prices,
    )


def _policy(document: dict[str, Any] | None) -> Policy | None:
    """The policy as stored (`representations.policy_document`: the version and when it
    took effect, then the policy as set)."""
    if document is None:
        return None
    return parse_policy(
        {k: v for k, v in document.items() if k not in ("version", "effective_from")}
    )


async def drift_summary(
    pool: asyncpg.Pool, platform_id: str, strategy_id: UUID, *, schema: str = DEFAULT_SCHEMA
) -> dict[str, Any]:
    """The Strategy's drift over its active Traders (a liquidated one holds nothing, a
    pending one does not exist yet for the API), each valued at the latest prices."""
    context = await drift_context(pool, platform_id, strategy_id, schema=schema)
    summary = DriftSummary()
    held: set[str] = set()
    where = "platform_id = $1 AND strategy_id = $2"
    async with pool.acquire() as connection, connection.transaction():
        liquidated = await connection.fetchval(
            f"SELECT count(*) FROM {TRADERS.qualified(schema)}"
            f" WHERE {where} AND status NOT IN ('{ACTIVE}', 'pending')",
            platform_id,
            strategy_id,
        )
        cursor = await connection.cursor(
            f"SELECT positions::text AS positions, cash FROM {TRADERS.qualified(schema)}"
            f" WHERE {where} AND status = '{ACTIVE}'",
            platform_id,
            strategy_id,
        )
        while batch := await cursor.fetch(BATCH):
            held |= await asyncio.to_thread(_add, summary, batch, context)
    return _shown(context, summary, held, int(liquidated))


def _add(summary: DriftSummary, batch: Sequence[Any], context: DriftContext) -> set[str]:
    """Add a batch of (positions, cash) records; returns the assets they hold."""
    prices, targets, band = context.price_values, context.targets, context.band
    held: set[str] = set()
    for record in batch:
        positions = {a: Decimal(q) for a, q in orjson.loads(record["positions"]).items()}
        held.update(positions)
        summary.add(trader_drift(Holdings(positions, record["cash"]), prices, targets, band))
    return held


def _shown(
    context: DriftContext, summary: DriftSummary, held: set[str], liquidated: int
) -> dict[str, Any]:
    strategy = context.strategy
    used = sorted(a for a in {*context.targets.weights, *held} if a in context.prices)
    return {
        "strategy_id": str(strategy.id),
        "quoted_currency": strategy.quoted_currency,
        "model_version": context.model_version,
        "policy_version": context.policy_version,
        "drift_band": None if context.band is None else context.band.as_dict(),
        "cash_buffer": plain_decimal(context.targets.cash),
        "prices": {
            a: {
                "price": plain_decimal(context.prices[a].price),
                "priced_at": rfc3339(context.prices[a].priced_at),
            }
            for a in used
        },
        "traders": summary.traders,
        "unpriced": summary.unpriced,
        "excluded": {"liquidated": liquidated, "empty": summary.empty},
        "largest_drift": shown_drift(summary.largest_drift),
        "value_out_of_line": plain_decimal(
            summary.value_out_of_line(fiat_precision(strategy.quoted_currency))
        ),
        "beyond": {str(band): n for band, n in summary.counts_beyond().items()},
        "outside_policy_band": None if context.band is None else summary.outside,
    }
