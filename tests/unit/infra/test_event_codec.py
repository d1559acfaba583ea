"""The typed event form: every event of a whole story reads back equal to what eventsourcing's
tagged form gives, for the aggregates and for the relay, and old tagged rows still load."""

from __future__ import annotations

import dataclasses
import inspect
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.domain import CanMutateAggregate, CanSnapshotAggregate
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import get_topic

import domain
from domain.eligibility import ParticipantStatus
from domain.services import Trading
from domain.statuses import OperationType
from domain.strategy import Strategy
from infra.bus.outbox import event_message, plain
from infra.eventstore.codec import MARK, TypedMapper, decoder_for
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

CODES = ["P1", "P2", "P3", "P4"]


def story() -> Trading:
    """Every kind of event the domain records, at least once."""
    app = new_app(chunk_size=2)
    app.register_participants(PLATFORM, CODES)
    app.register_participants(PLATFORM, ["P4"], ParticipantStatus.ACTIVE, ["SOL"])
    strategy = new_strategy(app)
    enroll = {"allocations": BLUE_CHIP, "participants": funded(CODES)}
    run(app, strategy, OperationType.ENROLLMENT, enroll)
    run(app, strategy, OperationType.TOP_UP, {**enroll, "participants": funded(CODES, "10.00")})
    run(app, strategy, OperationType.REBALANCE, {"allocations": BLUE_CHIP})
    sell = {"allocations": BLUE_CHIP, "participants": funded(CODES[:2], "5.00")}
    run(app, strategy, OperationType.PARTIAL_SELL, sell)
    shifted = [{**a, "weight": w} for a, w in zip(BLUE_CHIP, ("0.40", "0.40", "0.20"), strict=True)]
    failing = request(app, strategy, OperationType.REBALANCE, {"allocations": shifted})
    check_all(app, failing.id)
    assert fail_and_release(app, failing.id).failure
    run(app, strategy, OperationType.LIQUIDATION, {"all": True})
    return app


@pytest.fixture(scope="module")
def stored() -> list[StoredEvent]:
    app = story()
    return list(app.recorder.select_notifications(start=1, limit=1_000_000))


def legacy_mapper() -> Mapper[Any]:
    return Trading().mapper


def typed_mapper() -> TypedMapper:
    transcoder = Trading().construct_transcoder()
    assert isinstance(transcoder, JSONTranscoder)
    return TypedMapper(transcoder)


def test_every_event_reads_back_equal_through_the_typed_form(stored: list[StoredEvent]) -> None:
    legacy, typed = legacy_mapper(), typed_mapper()
    kinds = set()
    for row in stored:
        event = legacy.to_domain_event(row)
        again = typed.to_stored_event(event)
        if isinstance(event, CanSnapshotAggregate):
            assert again.state[:1] != MARK
        else:
            assert again.state[:1] == MARK
            kinds.add(type(event).__qualname__)
        back = typed.to_domain_event(again)
        assert type(back) is type(event)
        assert vars(back) == vars(event), type(event).__qualname__
    assert {"Trader.Settled", "Trader.HoldReleased", "FloatAccount.Reserved"} <= kinds
    assert len(kinds) >= 20


def test_rows_in_the_tagged_form_still_load(stored: list[StoredEvent]) -> None:
    legacy, typed = legacy_mapper(), typed_mapper()
    for row in stored:
        assert row.state[:1] != MARK
        assert vars(typed.to_domain_event(row)) == vars(legacy.to_domain_event(row))


def test_the_relay_reads_the_same_plain_values_from_both_forms(stored: list[StoredEvent]) -> None:
    legacy, typed = legacy_mapper(), typed_mapper()
    for row in stored:
        event = legacy.to_domain_event(row)
        if isinstance(event, CanSnapshotAggregate):
            continue
        old = {k: plain(v) for k, v in typed.decode_state(row).items()}
        new = {k: plain(v) for k, v in typed.decode_state(typed.to_stored_event(event)).items()}
        assert datetime.fromisoformat(old.pop("timestamp")) == datetime.fromisoformat(
            new.pop("timestamp")
        )
        assert new == old


def test_a_decimal_keeps_its_exact_text() -> None:
    typed = typed_mapper()
    app = new_app()
    account = app._float(PLATFORM, "USD")
    account.deposit(Decimal("10.50"), "WIRE-1")
    event = account.collect_events()[-1]
    back = typed.to_domain_event(typed.to_stored_event(event))
    assert str(back.amount) == "10.50"
    assert isinstance(back.amount, Decimal)


def every_event_class() -> list[type[Any]]:
    found = []
    for module in [getattr(domain, n) for n in ("trader", "operation", "chunk", "float_account")]:
        for _, aggregate in inspect.getmembers(module, inspect.isclass):
            for _, event in inspect.getmembers(aggregate, inspect.isclass):
                if issubclass(event, CanMutateAggregate) and dataclasses.is_dataclass(event):
                    found.append(event)
    return found


@pytest.mark.parametrize("event_class", every_event_class(), ids=get_topic)
def test_each_event_class_has_a_decoder_naming_all_its_fields(event_class: type[Any]) -> None:
    decoder = decoder_for(event_class)
    names = set(decoder.type.__annotations__)
    fields = {f.name for f in dataclasses.fields(event_class)}
    assert fields - {"originator_id", "originator_version"} <= names


def test_the_relay_publishes_typed_rows_without_converting_them_again(
    stored: list[StoredEvent],
) -> None:
    typed = typed_mapper()
    legacy = legacy_mapper()
    for position, row in enumerate(stored, 1):
        event = legacy.to_domain_event(row)
        if isinstance(event, CanSnapshotAggregate):
            continue
        new_row = typed.to_stored_event(event)
        args = (position, row.topic, row.originator_id, row.originator_version)
        old = event_message(*args, typed.decode_state(row))
        new = event_message(*args, typed.decode_state(new_row), already_plain=True)
        assert new == old


def test_a_float_the_json_form_cannot_hold_is_refused_not_stored_as_null() -> None:

    strategy = Strategy(PLATFORM, uuid4(), "USD", {"ratio": float("nan")}, "hash")
    (created,) = strategy.collect_events()
    with pytest.raises(ValueError, match="cannot be stored"):
        typed_mapper().to_stored_event(created)
    finite = Strategy(PLATFORM, uuid4(), "USD", {"ratio": 0.5, "n": [1.5]}, "hash")
    (ok,) = finite.collect_events()
    back = typed_mapper().to_domain_event(typed_mapper().to_stored_event(ok))
    assert back.metadata == {"ratio": 0.5, "n": [1.5]}
