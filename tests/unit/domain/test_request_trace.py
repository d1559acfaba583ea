"""An Operation records the trace of the request that made it (issue 20), for the relay to
pass on; no rule reads it, and a history written before it replays as it did."""

from __future__ import annotations

from uuid import uuid4

from domain.commands import operation_command
from domain.operation import Operation
from domain.request_trace import RequestTrace
from domain.services import Trading
from domain.statuses import OperationType
from domain.strategy import Strategy
from tests.unit.domain.flows import BLUE_CHIP, PLATFORM, funded

TRACE = RequestTrace("req-7", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


def enroll(app: Trading, strategy: Strategy, trace: RequestTrace) -> Operation:
    app.register_participants(PLATFORM, ["A1", "A2"])
    body = {"allocations": BLUE_CHIP, "participants": funded(["A1", "A2"])}
    command = operation_command(OperationType.ENROLLMENT, strategy.id, body)
    operation, created = app.handle(PLATFORM, uuid4(), command, trace)
    assert created
    assert isinstance(operation, Operation)
    return operation


def test_the_requested_event_records_the_requests_trace(app: Trading, strategy: Strategy) -> None:
    operation = enroll(app, strategy, TRACE)
    requested = next(iter(app.events.get(operation.id)))
    assert requested.correlation_id == "req-7"  # type: ignore[attr-defined]
    assert requested.traceparent == TRACE.traceparent  # type: ignore[attr-defined]


def test_a_history_without_a_trace_replays_as_before(app: Trading, strategy: Strategy) -> None:
    operation = enroll(app, strategy, TRACE)
    (stored,) = app.recorder.select_events(operation.id, lte=1)
    state = app.mapper.transcoder.decode(stored.state)
    del state["correlation_id"], state["traceparent"]
    older = type(stored)(
        originator_id=stored.originator_id,
        originator_version=stored.originator_version,
        topic=stored.topic,
        state=app.mapper.transcoder.encode(state),
    )
    replayed = app.mapper.to_domain_event(older).mutate(None)
    assert isinstance(replayed, Operation)
    assert (replayed.id, replayed.chunk_count) == (operation.id, operation.chunk_count)
    assert replayed.status == operation.status


def test_the_trace_is_no_part_of_the_requests_identity(app: Trading, strategy: Strategy) -> None:
    app.register_participants(PLATFORM, ["A1"])
    body = {"allocations": BLUE_CHIP, "participants": funded(["A1"])}
    command = operation_command(OperationType.ENROLLMENT, strategy.id, body)
    request_id = uuid4()
    first, created = app.handle(PLATFORM, request_id, command, TRACE)
    again, replayed_created = app.handle(PLATFORM, request_id, command, RequestTrace("other"))
    assert created and not replayed_created
    assert again.id == first.id
