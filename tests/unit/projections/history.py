"""Real event histories for the projection tests: commands run on the in-memory domain, and
the stored events turned into the messages the relay publishes (through JSON, as on Kafka)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from domain import ids
from domain.statuses import OperationType
from domain.trader import Trader
from infra.bus.messages import DomainEventMessage
from infra.bus.outbox import event_message
from infra.eventstore.notification_log import START, ApplicationNotificationLog, LogPosition
from tests.unit.domain.flows import (
    BLUE_CHIP,
    PLATFORM,
    check_all,
    fail_and_release,
    funded,
    new_app,
    new_strategy,
    request,
    run,
)

if TYPE_CHECKING:
    from domain.operation import Operation
    from domain.services import Trading
    from domain.strategy import Strategy

ELIGIBLE = ["P1", "P2", "P3"]
INELIGIBLE = "X9"  # never registered: the credit check rejects it as participant_ineligible
NEWCOMER = "N1"  # registered, first enrolled by the Operation whose pricing fails


def messages(app: Trading, after: LogPosition = START) -> list[DomainEventMessage]:
    """The history after log position `after`, as consumers of `strategies.events` see it."""
    found = []
    for stored in ApplicationNotificationLog(app).read(after, 100_000):
        message = event_message(
            stored.position, stored.topic, stored.aggregate_id, stored.version, stored.state
        )
        found.append(DomainEventMessage.model_validate_json(message.encode()))
    return found


@dataclass
class Story:
    app: Trading
    strategy: Strategy
    enrollment: Operation
    top_up: Operation
    failed_enrollment: Operation
    failed_top_up: Operation

    def trader(self, code: str) -> Trader:
        found = self.app.find(ids.trader_id(self.strategy.id, code), Trader)
        assert found is not None
        return found


def story(app: Trading | None = None) -> Story:
    """An enrollment (one participant ineligible), a top-up of P1, then two Operations whose
    pricing fails: an enrollment of P2 (already active: rejected by the check) and newcomer
    N1 (held, then released: it never becomes visible), and a top-up of P3."""
    app = app or new_app(chunk_size=2)
    app.register_participants(PLATFORM, [*ELIGIBLE, NEWCOMER])
    strategy = new_strategy(app)
    enrollment = run(
        app,
        strategy,
        OperationType.ENROLLMENT,
        {"allocations": BLUE_CHIP, "participants": funded([*ELIGIBLE, INELIGIBLE])},
    )
    top_up = run(
        app,
        strategy,
        OperationType.TOP_UP,
        {"allocations": BLUE_CHIP, "participants": funded(["P1"], "500.00")},
    )
    failed = [
        _fail(app, strategy, kind, funded(codes, "300.00"))
        for kind, codes in (
            (OperationType.ENROLLMENT, ["P2", NEWCOMER]),
            (OperationType.TOP_UP, ["P3"]),
        )
    ]
    return Story(app, strategy, enrollment, top_up, *failed)


def _fail(
    app: Trading, strategy: Strategy, kind: OperationType, participants: list[dict[str, Any]]
) -> Operation:
    body = {"allocations": BLUE_CHIP, "participants": participants}
    checked = check_all(app, request(app, strategy, kind, body).id)
    return fail_and_release(app, checked.id)
