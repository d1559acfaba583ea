"""Request and response bodies of the HTTP API, as the spec names them (§1, §2, §11).

Decimals travel as strings; the domain validates their content (weights sum to 1, amounts
within the currency's minor unit) and names the offending field, so these models only fix
the JSON types and document the shapes and examples for OpenAPI. The decimal pattern below is
shown in the OpenAPI document only: `domain.money.parse_decimal` enforces it, with the same
error on every way in (HTTP, Kafka, CLI, admin).

Booleans are strict (`StrictBool`): pydantic's lax mode would read "yes", "on" or 1 as true,
which the command topic refuses; one body must mean the same thing on both ways in.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator
from pydantic.config import JsonDict

from domain.json_text import holds_unpaired_surrogate

#: ASCII digits, an optional fraction, no sign, exponent, separator or space.
DECIMAL_DOC: JsonDict = {"pattern": "^[0-9]+(\\.[0-9]+)?$"}

STRATEGY_ID = "9ba5e569-a966-42a9-a7ad-666b0a5300f3"
ALLOCATIONS_EXAMPLE = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _encodable_text(cls, value: Any) -> Any:
        """Python's json, FastAPI's parser, decodes an escaped lone surrogate ("\\ud800") into
        a str that UTF-8 cannot encode. pydantic refuses it in a `str` field but not inside
        `metadata` or a `str | object` list item, where the request fingerprint then failed with
        a 500. Every body read by `domain.json_text` is refused before it gets here (400
        `invalid_json`); this keeps a model built from a parsed value just as strict."""
        if holds_unpaired_surrogate(value):
            raise ValueError("must be valid Unicode text (no unpaired surrogate)")
        return value


class Allocation(Body):
    underlying_currency: str = Field(min_length=1, max_length=16, examples=["BTC"])
    weight: str = Field(
        description="Decimal string; the weights of a request sum to exactly 1.",
        examples=["0.50"],
        json_schema_extra=DECIMAL_DOC,
    )


class FundedParticipant(Body):
    participant_code: str = Field(min_length=1, max_length=64, examples=["ABC123"])
    amount: str = Field(
        description="Fiat in the strategy's quoted currency, a decimal string.",
        examples=["1000.00"],
        json_schema_extra=DECIMAL_DOC,
    )
    auto_rebalance: StrictBool = Field(
        default=False, description="Enrollment only: include in rebalances that name nobody."
    )


class NamedParticipant(Body):
    participant_code: str = Field(min_length=1, max_length=64, examples=["ABC123"])


MODEL_DOC = (
    "Extension: omitted, the Strategy's model (its current version) is used and the "
    "Operation records which version; a Strategy without a model needs them."
)


class StrategyCreate(Body):
    quoted_currency: str = Field(examples=["USD"])
    metadata: dict[str, Any] = Field(
        default_factory=dict, examples=[{"platform_label": "Blue Chip Crypto"}]
    )
    allocations: list[Allocation] | None = Field(
        default=None,
        min_length=1,
        description="Extension: the Strategy's model (version 1), used by Operation requests "
        "that send no allocations.",
        examples=[ALLOCATIONS_EXAMPLE],
    )


class ModelUpdate(Body):
    """Extension: the next version of a Strategy's model."""

    allocations: list[Allocation] = Field(min_length=1, examples=[ALLOCATIONS_EXAMPLE])


class DriftBand(Body):
    absolute: str | None = Field(
        default=None,
        description="Weight points an asset may be off its target (0.05: 5 points), above 0 "
        "and at most 1.",
        examples=["0.05"],
        json_schema_extra=DECIMAL_DOC,
    )
    relative: str | None = Field(
        default=None,
        description="Share of its target an asset may be off it (0.20: a 30% asset between "
        "24% and 36%), above 0 and at most 10.",
        examples=["0.20"],
        json_schema_extra=DECIMAL_DOC,
    )


class Calendar(Body):
    frequency: Literal["daily", "weekly", "monthly", "quarterly"]
    time: str = Field(
        default="00:00", description="UTC time of day, HH:MM.", pattern="^[0-2][0-9]:[0-5][0-9]$"
    )
    weekday: (
        Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] | None
    ) = Field(default=None, description="Weekly only.")
    day: StrictInt | None = Field(
        default=None,
        ge=1,
        le=31,
        description="Monthly and quarterly (of the quarter's first month) only; beyond a "
        "month's last day, its last day.",
    )
    paused_until: str | None = Field(
        default=None,
        description="No run before this date (UTC midnight).",
        pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        examples=["2027-01-31"],
    )


class PolicyUpdate(Body):
    """Extension: the next version of a Strategy's rebalancing policy. Every part is
    optional; without a calendar nothing runs by itself."""

    drift_band: DriftBand | None = Field(
        default=None, description="Only Traders outside it are rebalanced; without one, all."
    )
    calendar: Calendar | None = None
    cooldown_days: StrictInt | None = Field(
        default=None,
        ge=0,
        le=366,
        description="No automatic rebalance of a Trader within this many days of its last "
        "rebalance, manual or automatic (default 0).",
    )
    cash_buffer: str | None = Field(
        default=None,
        description="Share of each Trader's value every buy leaves in cash, 0 to 0.20 (default 0).",
        examples=["0.0025"],
        json_schema_extra=DECIMAL_DOC,
    )


class FundedOperationRequest(Body):
    """Enroll, top-up and partial-sell."""

    allocations: list[Allocation] | None = Field(
        default=None, min_length=1, description=MODEL_DOC, examples=[ALLOCATIONS_EXAMPLE]
    )
    participants: list[FundedParticipant] = Field(
        min_length=1,
        examples=[[{"participant_code": "ABC123", "amount": "1000.00", "auto_rebalance": True}]],
    )


class RebalanceRequest(Body):
    allocations: list[Allocation] | None = Field(
        default=None, min_length=1, description=MODEL_DOC, examples=[ALLOCATIONS_EXAMPLE]
    )
    participants: list[str | NamedParticipant] | None = Field(
        default=None,
        description="Omitted: every active Trader with auto_rebalance. Given: exactly these.",
        examples=[["ABC123", {"participant_code": "DEF456"}]],
    )
    drift_tolerance: str | None = Field(
        default=None,
        description="Extension: Traders whose weights are all within this of the target "
        "are skipped.",
        examples=["0.02"],
        json_schema_extra=DECIMAL_DOC,
    )


class LiquidateRequest(Body):
    participants: list[NamedParticipant] | None = Field(
        default=None, examples=[[{"participant_code": "ABC123"}]]
    )
    all: StrictBool = Field(default=False, description="Every active Trader of the Strategy.")


class TraderUpdate(Body):
    auto_rebalance: StrictBool


class StrategyModel(BaseModel):
    version: int = Field(description="1 for the first model, one more for each new one.")
    allocations: list[dict[str, str]] = Field(examples=[ALLOCATIONS_EXAMPLE])


class PolicyRunRef(BaseModel):
    policy_version: int
    period: str = Field(examples=["2026-W49"])


class PolicyRun(BaseModel):
    period: str = Field(examples=["2026-W49"], description="The calendar period it ran for.")
    policy_version: int
    operation_id: str | None = Field(
        description="The rebalance it requested; null: nobody drifted."
    )
    evaluated: int = Field(description="Auto-rebalance Traders valued at the run's prices.")
    outside: int = Field(description="Of those, outside the drift band.")
    cooling: int = Field(description="Of those, left out by the cooldown.")
    at: str


class StrategyPolicy(BaseModel):
    version: int = Field(description="1 for the first policy, one more for each new one.")
    effective_from: str | None = Field(description="No period scheduled before it runs.")
    drift_band: dict[str, str] | None = None
    calendar: dict[str, Any] | None = None
    cooldown_days: int
    cash_buffer: str
    last_run: PolicyRun | None = None


class Strategy(BaseModel):
    id: str = Field(examples=[STRATEGY_ID])
    request_id: str
    quoted_currency: str = Field(examples=["USD"])
    metadata: dict[str, Any]
    model: StrategyModel | None = Field(
        default=None, description="Extension: the current model, null while it has none."
    )
    status: Literal["active", "needs_adjustment"] = Field(
        default="active",
        description="Extension: `needs_adjustment` while the model names an instrument that "
        "cannot be traded (halted or disabled); automatic runs stop until a new model is set.",
    )
    broken_assets: list[str] = Field(
        default_factory=list, description="Extension: the model's assets that cannot be traded."
    )
    policy: StrategyPolicy | None = Field(
        default=None, description="Extension: the current rebalancing policy and its last run."
    )
    created_at: str = Field(examples=["2026-05-29T18:56:43Z"])
    updated_at: str


class Operation(BaseModel):
    id: str
    strategy_id: str
    request_id: str
    type: Literal["enrollment", "top_up", "partial_sell", "rebalance", "liquidation"]
    status: Literal[
        "validating", "pricing", "settling", "settled", "skipped", "failed", "cancelled"
    ] = Field(description="`cancelled` is an extension: the platform cancelled it in time.")
    status_reason: str = Field(examples=["", "partial_success", "all_rejected", "pricing_failed"])
    allocations: list[dict[str, str]]
    participant_count: int = Field(description="Extension: participants in scope.")
    counts: dict[str, int] = Field(
        description="Extension: Executions approved, rejected, skipped and settled so far.",
        examples=[{"approved": 2, "rejected": 1, "skipped": 0, "settled": 2}],
    )
    locked_prices: dict[str, dict[str, str]] = Field(
        description="Extension: per asset, the firm quote every Trader got (`price`, "
        "`quote_id`, `quoted_at`, `side`, `quantity`, `expires_at`); empty until pricing.",
        examples=[
            {
                "BTC": {
                    "price": "67012.50",
                    "quote_id": "q-1",
                    "quoted_at": "2026-05-29T18:56:44Z",
                    "side": "buy",
                    "quantity": "0.0149",
                    "expires_at": "2026-05-29T18:56:54Z",
                }
            }
        ],
    )
    origin: Literal["request", "policy"] = Field(
        default="request",
        description="Extension: `policy` when the scheduler requested it for a policy run.",
    )
    model_version: int | None = Field(
        default=None,
        description="Extension: the Strategy's model version it trades to; null when the "
        "request sent its allocations.",
    )
    policy_run: PolicyRunRef | None = Field(
        default=None, description="Extension: the policy version and period it ran for."
    )
    created_at: str
    updated_at: str


class Instruction(BaseModel):
    underlying_currency: str
    side: Literal["buy", "sell"]
    status: Literal["pending", "filled", "rejected"]
    requested_quantity: str | None = None
    requested_notional: str | None = None
    price: str | None = None
    quantity: str | None = None
    total_notional: str | None = None
    trade_id: str | None = None


class Execution(BaseModel):
    id: str
    strategy_id: str
    operation_id: str
    trader_id: str = Field(description='"" when rejected before the Trader existed.')
    participant_code: str
    account_label: str
    status: Literal["awaiting_execution", "settled", "skipped", "rejected", "cancelled"] = Field(
        description="`cancelled` is an extension: its Operation was cancelled before it traded."
    )
    status_reason: str
    status_reasons: list[str]
    instructions: list[Instruction]
    created_at: str
    updated_at: str


class Trader(BaseModel):
    id: str
    strategy_id: str
    participant_code: str
    account_label: str
    auto_rebalance: bool
    status: Literal["active", "liquidated"] = Field(description="Extension.")
    positions: dict[str, str] = Field(
        description="Extension: quantity per asset, decimal strings; assets at zero are absent.",
        examples=[{"BTC": "0.0074", "ETH": "0.081"}],
    )
    cash: str = Field(description="Extension: residual fiat from rounding.", examples=["0.03"])
    created_at: str
    updated_at: str


class Page(BaseModel):
    page: int = Field(description="1-based, counted in `size`.")
    size: int = Field(
        description="Extension: items per page as served. The size asked, or a divisor of it "
        "when the page would pass the response byte budget (STRATEGIES_MAX_RESPONSE_BYTES); "
        "`page` and `total_pages` then count in this size, so the page starts at the first "
        "item asked for. Continue with `page + 1` and this `size`."
    )
    total_pages: int


class StrategyPage(Page):
    message: list[Strategy]


class OperationPage(Page):
    message: list[Operation]


class ExecutionPage(Page):
    message: list[Execution]


class TraderPage(Page):
    message: list[Trader]


class DriftPrice(BaseModel):
    price: str = Field(description="Decimal string in the quoted currency.", examples=["67012.5"])
    priced_at: str = Field(
        description="When the event that recorded it happened: an Operation's indicative or "
        "locked prices, or a policy run's.",
        examples=["2026-05-29T18:56:44Z"],
    )


class DriftExcluded(BaseModel):
    liquidated: int = Field(description="Liquidated Traders (they hold nothing).")
    empty: int = Field(description="Active Traders whose value at the prices is zero.")


class DriftSummary(BaseModel):
    """Extension: how far a Strategy's active Traders are from its model at the latest
    indicative prices. A Trader's drift is its largest |weight - target| over the model's
    and its held assets, where the targets are the model less the policy's cash buffer
    (cash is not an asset here); pending Traders (first enrollment not settled) are not
    counted, liquidated ones are counted in `excluded`."""

    strategy_id: str
    quoted_currency: str = Field(examples=["USD"])
    model_version: int
    policy_version: int | None = Field(description="Null without a policy.")
    drift_band: dict[str, str] | None = Field(
        description="The policy's band, null without one.", examples=[{"absolute": "0.05"}]
    )
    cash_buffer: str = Field(description="The policy's cash buffer: the cash target.")
    prices: dict[str, DriftPrice] = Field(
        description="The latest price of each model or held asset, as used."
    )
    traders: int = Field(description="Active Traders valued at the prices.")
    unpriced: int = Field(description="Active Traders not valued: a held asset has no price.")
    excluded: DriftExcluded
    largest_drift: str = Field(
        description="The largest Trader drift, 6 decimal places rounded down ('0.000000' "
        "with no Trader).",
        examples=["0.083125"],
    )
    value_out_of_line: str = Field(
        description="What a rebalance of every Trader would move: the sum over Traders of "
        "value x sum(|weight - target|) / 2, cash counted as a line, rounded down to the "
        "currency's minor unit.",
        examples=["1523.07"],
    )
    beyond: dict[str, int] = Field(
        description="Traders whose drift is above each band (on the edge is inside).",
        examples=[{"0.01": 40, "0.02": 31, "0.05": 12, "0.10": 3}],
    )
    outside_policy_band: int | None = Field(
        description="Traders outside the policy's drift band (the scheduler's rule: only "
        "cash is outside too); null without a band."
    )


class ServerTime(BaseModel):
    epoch: int = Field(description="Unix seconds: what X-SCX-TIMESTAMP is compared with.")
    iso: str


class PreviewLeg(BaseModel):
    side: Literal["buy", "sell"]
    underlying_currency: str = Field(examples=["BTC"])
    quantity: str = Field(description="Decimal string, at the asset's precision.")
    notional: str = Field(description="Fiat paid (buy) or received (sell), a decimal string.")


class PreviewParticipant(BaseModel):
    participant_code: str
    outcome: Literal["approved", "rejected", "skipped"] = Field(
        description="How its Execution would end: `approved` would trade these legs (and "
        "settle), `rejected` and `skipped` would not trade."
    )
    status_reason: str = Field(description="The first reason, '' when approved.")
    status_reasons: list[str] = Field(
        description="Every reason that applies (spec §11.6).",
        examples=[["trader_not_found", "participant_ineligible"]],
    )
    decided_at: Literal["credit_check", "pricing"] = Field(
        description="Where the real run decides it: the credit check (every rule on every "
        "leg), or pricing (float in request order, a partial sell no longer covered, dust)."
    )
    legs: list[PreviewLeg] = Field(description="The planned legs; empty unless approved.")


class PreviewBlock(BaseModel):
    side: Literal["buy", "sell"]
    quantity: str


class PreviewAssetTotals(BaseModel):
    gross_buy_quantity: str
    gross_buy_notional: str
    gross_sell_quantity: str
    gross_sell_notional: str
    net_quantity: str = Field(description="Buys minus sells after internal netting (signed).")
    block: PreviewBlock | None = Field(
        description="The block order the venue would get; null where buys and sells cancel."
    )


class PreviewFloat(BaseModel):
    currency: str = Field(examples=["USD"])
    available: str = Field(description="The platform's float not held by other Operations.")
    needed: str = Field(description="What every buyer the credit check approves asks of it.")
    reserved: str = Field(
        description="What pricing would hold of `available`, buyers served in request order."
    )
    shortfall: str = Field(description="`needed` - `reserved`: the buyers left unfunded.")
    returned: str = Field(description="What sales (partial sell, liquidation) would pay in.")


class PreviewSummary(BaseModel):
    strategy_id: str
    type: Literal["enrollment", "top_up", "partial_sell", "rebalance", "liquidation"]
    quoted_currency: str
    allocations: list[dict[str, str]] | None = Field(
        description="The allocations the Operation would trade to (null for a liquidation)."
    )
    parameters: dict[str, str] = Field(
        description="What the Operation would record (`model_version`, `drift_tolerance`, "
        "`cash_buffer`, `all`)."
    )
    participant_count: int = Field(description="Participants in scope.")
    counts: dict[str, int] = Field(
        description="Participants by outcome.",
        examples=[{"approved": 9990, "rejected": 8, "skipped": 2}],
    )
    reasons: dict[str, int] = Field(
        description="Participants by reason (one participant may count under several).",
        examples=[{"insufficient_funds": 5, "participant_ineligible": 3, "dust": 2}],
    )
    totals: dict[str, PreviewAssetTotals] = Field(description="Per asset, over who would trade.")
    float_: PreviewFloat = Field(alias="float", description="The platform's float.")
    prices: dict[str, str] = Field(
        description="The venue's indicative prices it was judged at (every tradable asset of "
        "the quoted currency, as the credit check asks for them)."
    )
    priced_at: str = Field(description="When those prices were read.")


class OperationPreview(BaseModel):
    """Extension: what an Operation request would do now, at indicative prices, decided by
    the real stages' own code; nothing is written (no Operation, hold or quote)."""

    summary: PreviewSummary
    message: list[PreviewParticipant] | None = Field(
        description="The page of participants, in request order; null with summary_only."
    )
    page: int | None = Field(description="1-based; null with summary_only.")
    size: int | None = Field(
        description="Items per page as served (see the lists' `size`); null with summary_only."
    )
    total_pages: int | None = Field(description="Null with summary_only.")
