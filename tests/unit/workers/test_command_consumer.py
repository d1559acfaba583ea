"""The command consumer on the in-process bus: a poison record is dead-lettered after a few
attempts and the commands behind it go on; an outage is waited out, however long."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import aiokafka.errors
import eventsourcing.persistence
import psycopg
import pytest

from domain import ids
from domain.services import Trading
from infra.bus import Delivery, Record
from infra.bus.memory import InProcessBus
from infra.bus.messages import Command, CommandResult, DeadLetter
from infra.bus.topic_names import PLATFORM_HEADER, Topics
from infra.metrics import METRICS
from infra.transient import is_transient
from tests.unit.domain.flows import PLATFORM, check_all, lock_and_fill, new_strategy, settle_all
from workers.commands import MAX_ATTEMPTS, CommandService, command_consumer

WAIT = 10.0
TOPICS = Topics("unit")


class FailingScopes(Trading):
    """`Trading` whose roster fails its first `failures` lookups with what `error` makes."""

    def __init__(self, error: Callable[[], Exception], failures: int) -> None:
        super().__init__()
        self.ensure_default_catalogue()
        self.error = error
        self.failures = failures
        self.calls = 0

    def scope(self, strategy_id: UUID, *, auto_rebalance_only: bool) -> list[str]:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error()
        return []


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class Outbox:
    """Every record the consumer publishes, by topic."""

    def __init__(self, bus: InProcessBus) -> None:
        self.results: asyncio.Queue[CommandResult] = asyncio.Queue()
        self.dead: asyncio.Queue[DeadLetter] = asyncio.Queue()

        async def result(delivery: Delivery) -> None:
            await self.results.put(CommandResult.model_validate_json(delivery.value))

        async def dead(delivery: Delivery) -> None:
            await self.dead.put(DeadLetter.model_validate_json(delivery.value))

        bus.subscribe(TOPICS.command_results, "test", result)
        bus.subscribe(TOPICS.commands_dead_letter, "test", dead)


@pytest.fixture
async def bus() -> AsyncIterator[InProcessBus]:
    bus = InProcessBus(partitions=1, retry_initial=0.01, retry_max=0.02, graceful_timeout=WAIT)
    yield bus
    await bus.stop()


async def start(bus: InProcessBus, app: FailingScopes) -> tuple[Outbox, UUID]:
    strategy = new_strategy(app)
    service = CommandService(app, call)
    bus.subscribe(TOPICS.commands, "commands", command_consumer(service, bus, TOPICS))
    outbox = Outbox(bus)
    await bus.start()
    return outbox, strategy.id


def run_to_end(app: Trading, operation_id: UUID) -> None:
    check_all(app, operation_id)
    lock_and_fill(app, operation_id)
    settle_all(app, operation_id)


def command(body: Command) -> Record:
    return Record(
        TOPICS.commands, body.encode(), key=str(uuid4()), headers={PLATFORM_HEADER: PLATFORM}
    )


def rebalance_all(strategy_id: UUID) -> Record:
    # No participants: the consumer asks the roster who is in scope, and the roster fails.
    return command(Command(command="rebalance", strategy_id=strategy_id, body={}))


async def test_a_record_that_fails_every_attempt_is_dead_lettered_and_the_next_goes_on(
    bus: InProcessBus,
) -> None:
    scopes = FailingScopes(lambda: ArithmeticError("a bug this record sets off"), 10**6)
    outbox, strategy_id = await start(bus, scopes)
    counted = METRICS.command_results.labels
    dead_before = counted("dead_letter")._value.get()
    accepted_before = counted("accepted")._value.get()
    poison = rebalance_all(strategy_id)
    await bus.publish(poison)
    await bus.publish(command(Command(command="create_strategy", body={"quoted_currency": "USD"})))

    letter = await asyncio.wait_for(outbox.dead.get(), WAIT)
    after = await asyncio.wait_for(outbox.results.get(), WAIT)

    assert (letter.reason, letter.key, letter.topic) == ("handler_failed", poison.key, poison.topic)
    assert letter.detail.startswith(f"ArithmeticError on each of {MAX_ATTEMPTS} attempts")
    assert letter.value == poison.value.decode()
    assert scopes.calls == MAX_ATTEMPTS
    assert after.outcome == "accepted" and after.resource_type == "strategy"
    await asyncio.sleep(0.05)  # the result is published before it is counted
    assert counted("dead_letter")._value.get() == dead_before + 1
    assert counted("accepted")._value.get() == accepted_before + 1


async def test_an_outage_is_waited_out_however_many_attempts_it_takes(bus: InProcessBus) -> None:
    outage = 3 * MAX_ATTEMPTS
    scopes = FailingScopes(lambda: psycopg.OperationalError("connection refused"), outage)
    outbox, strategy_id = await start(bus, scopes)
    record = rebalance_all(strategy_id)
    await bus.publish(record)

    result = await asyncio.wait_for(outbox.results.get(), WAIT)

    assert result.request_id == record.key and scopes.calls == outage + 1
    assert outbox.dead.empty()


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (psycopg.OperationalError("server closed the connection"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (aiokafka.errors.KafkaConnectionError(), True),
        (aiokafka.errors.NotLeaderForPartitionError(), True),
        (aiokafka.errors.MessageSizeTooLargeError(), False),
        (ArithmeticError(), False),
        (KeyError("x"), False),
        (ValueError(), False),
    ],
)
def test_outages_are_told_from_faults(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_an_outage_wrapped_by_the_event_store_is_still_an_outage() -> None:
    try:
        try:
            raise psycopg.OperationalError("terminating connection")
        except psycopg.OperationalError as cause:
            raise eventsourcing.persistence.InterfaceError("wrapped") from cause
    except eventsourcing.persistence.InterfaceError as wrapped:
        assert is_transient(wrapped)
    try:
        try:
            raise psycopg.OperationalError("refused")
        except psycopg.OperationalError:
            raise KeyError("a bug in an except block") from None
    except KeyError as unrelated:
        assert not is_transient(unrelated)


async def test_update_trader_by_command_is_idempotent_like_the_patch() -> None:
    """The Kafka `update_trader` keeps the same request-id record as every command: the same
    request again is `replayed` and changes nothing; the id reused elsewhere is rejected."""
    app = FailingScopes(lambda: AssertionError("unused"), 0)
    strategy = new_strategy(app)
    app.register_participants(PLATFORM, ["P1"])
    app.deposit_float(PLATFORM, "USD", Decimal("100.00"), "FLOAT")
    enroll = Command(
        command="enroll",
        strategy_id=strategy.id,
        body={
            "allocations": [{"underlying_currency": "BTC", "weight": "1"}],
            "participants": [{"participant_code": "P1", "amount": "50.00"}],
        },
    )
    service = CommandService(app, call)
    enrolled = await service.execute(PLATFORM, uuid4(), enroll)
    run_to_end(app, UUID(enrolled.resource["id"]))
    trader = ids.trader_id(strategy.id, "P1")
    change = Command(command="update_trader", trader_id=trader, body={"auto_rebalance": False})
    request_id = uuid4()

    first = await service.execute(PLATFORM, request_id, change)
    again = await service.execute(PLATFORM, request_id, change)
    flipped = await service.execute(
        PLATFORM, request_id, change.model_copy(update={"body": {"auto_rebalance": True}})
    )
    reused = await service.execute(PLATFORM, request_id, enroll)

    assert (first.outcome, again.outcome) == ("accepted", "replayed")
    assert first.resource == again.resource and again.resource["auto_rebalance"] is False
    assert flipped.error is not None and flipped.error.code == "idempotency_conflict"
    assert reused.error is not None and reused.error.code == "idempotency_conflict"
