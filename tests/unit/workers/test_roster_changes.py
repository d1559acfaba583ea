from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from projections.roster import RosterChange, roster_change
from workers.messages import DomainEventMessage

TRADER, STRATEGY = uuid4(), uuid4()


def event(type_: str, version: int, **data: object) -> DomainEventMessage:
    return DomainEventMessage(
        position=1,
        aggregate_id=TRADER,
        aggregate_type="Trader",
        aggregate_version=version,
        type=type_,
        timestamp=datetime.now(UTC),
        data=data,
    )


def test_opening_adds_a_pending_row_and_settlement_updates_it() -> None:
    opened = roster_change(
        event(
            "Trader.Opened",
            1,
            strategy_id=str(STRATEGY),
            participant_code="A",
            auto_rebalance=True,
            platform_id="p",
        )
    )
    assert opened == RosterChange(TRADER, 1, STRATEGY, "A", "pending", True)
    settled = roster_change(event("Trader.Settled", 3, status="active", auto_rebalance=False))
    assert settled == RosterChange(TRADER, 3, status="active", auto_rebalance=False)
    flag = roster_change(event("Trader.AutoRebalanceChanged", 4, auto_rebalance=True))
    assert flag == RosterChange(TRADER, 4, auto_rebalance=True)


def test_holds_do_not_concern_the_roster() -> None:
    assert roster_change(event("Trader.HoldPlaced", 2, operation_id=str(uuid4()))) is None
