"""The demo's story: who the simulated participants are and which Operations they go through.

Pure data, so the story is the same on every run and easy to read (and to test).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

BLUE_CHIP = [
    {"underlying_currency": "BTC", "weight": "0.50"},
    {"underlying_currency": "ETH", "weight": "0.30"},
    {"underlying_currency": "SOL", "weight": "0.20"},
]
NEW_WEIGHTS = [
    {"underlying_currency": "BTC", "weight": "0.40"},
    {"underlying_currency": "ETH", "weight": "0.35"},
    {"underlying_currency": "SOL", "weight": "0.15"},
    {"underlying_currency": "LINK", "weight": "0.10"},
]
#: A promotion bought in BTC only: the Traders it pushes off the model.
BTC_ONLY = [{"underlying_currency": "BTC", "weight": "1"}]
#: The Strategy's policy in the demo: weekly, Mondays 09:30 UTC, 5 points of drift allowed.
WEEKLY_POLICY: dict[str, Any] = {
    "calendar": {"frequency": "weekly", "weekday": "monday", "time": "09:30"},
    "drift_band": {"absolute": "0.05"},
}
PLATFORM = "demo-platform"


@dataclass(frozen=True)
class Cast:
    """The participants: every one registered, a few of them ineligible to show exclusions."""

    codes: list[str]
    suspended: list[str]
    no_sol: list[str]

    @classmethod
    def of(cls, traders: int) -> Cast:
        codes = [f"DEMO-{i:06d}" for i in range(1, traders + 1)]
        return cls(codes, codes[996::997], codes[1008::1009])

    def amount(self, index: int) -> str:
        return f"{100 + (index % 50) * 20}.00"

    @property
    def float_needed(self) -> Decimal:
        enroll = sum((Decimal(self.amount(i)) for i in range(len(self.codes))), Decimal(0))
        return enroll * 2 + len(self.promoted) * Decimal(PROMOTION)

    @property
    def promoted(self) -> list[str]:
        """The participants of the BTC promotion (one in twenty, none liquidated)."""
        return self.codes[3::20]


PROMOTION = "800.00"


@dataclass(frozen=True)
class Step:
    title: str
    command: str
    body: dict[str, Any]


def story(cast: Cast) -> list[Step]:
    codes = cast.codes
    enroll = [
        {"participant_code": c, "amount": cast.amount(i), "auto_rebalance": i % 10 != 9}
        for i, c in enumerate(codes)
    ]
    top_up = [{"participant_code": c, "amount": "250.00"} for c in codes[::10]]
    sell = [{"participant_code": c, "amount": "50.00"} for c in codes[5::100]]
    leave = [{"participant_code": c} for c in codes[7::200]]
    return [
        Step(
            "Enroll everyone into Blue Chip Crypto",
            "enroll",
            {"allocations": BLUE_CHIP, "participants": enroll},
        ),
        Step(
            "Top up every tenth participant",
            "top_up",
            {"allocations": BLUE_CHIP, "participants": top_up},
        ),
        Step(
            "Rebalance every auto-rebalance Trader to new weights",
            "rebalance",
            {"allocations": NEW_WEIGHTS},
        ),
        Step(
            "Partially sell for one in a hundred",
            "partial_sell",
            {"allocations": NEW_WEIGHTS, "participants": sell},
        ),
        Step("Liquidate one in two hundred", "liquidate", {"participants": leave}),
    ]


def mistaken_top_up(cast: Cast) -> Step:
    """A top-up sent by mistake, which the platform cancels before it is priced."""
    buyers = [{"participant_code": c, "amount": "100.00"} for c in cast.codes[1::4]]
    return Step(
        "A mistaken top-up, cancelled at once",
        "top_up",
        {"allocations": BLUE_CHIP, "participants": buyers},
    )


def promotion(cast: Cast) -> Step:
    """After the story: a BTC-only top-up that pushes one in twenty off the model."""
    buyers = [{"participant_code": c, "amount": PROMOTION} for c in cast.promoted]
    return Step(
        "A BTC promotion for one in twenty",
        "top_up",
        {"allocations": BTC_ONLY, "participants": buyers},
    )
