"""One policy for a message whose handling failed: a refusal is answered and acknowledged, an
outage is waited out, a fault is retried (a command's only a few times) then given up."""

from __future__ import annotations

import pytest

from domain.errors import IllegalTransitionError, InvalidRequestError
from domain.failures import (
    COMMAND_ATTEMPTS,
    COMMANDS,
    STAGE_TASKS,
    Failure,
    FailurePolicy,
    Verdict,
    classify,
)


class OutageError(Exception):
    pass


class GarbledError(Exception):
    pass


def is_outage(error: BaseException) -> bool:
    return isinstance(error, OutageError)


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (InvalidRequestError("no"), Failure.REFUSED),
        (IllegalTransitionError("moved past"), Failure.REFUSED),
        (GarbledError(), Failure.UNREADABLE),
        (OutageError(), Failure.OUTAGE),
        (ZeroDivisionError(), Failure.FAULT),
    ],
)
def test_errors_are_told_apart(error: Exception, failure: Failure) -> None:
    assert classify(error, outage=is_outage, unreadable=(GarbledError,)) is failure


def test_without_an_unreadable_kind_a_garbled_message_is_a_fault() -> None:
    assert classify(GarbledError(), outage=is_outage) is Failure.FAULT


@pytest.mark.parametrize("policy", [STAGE_TASKS, COMMANDS])
def test_refusals_are_settled_and_outages_retried_on_every_attempt(policy: FailurePolicy) -> None:
    for attempt in (1, 2, COMMAND_ATTEMPTS, 10 * COMMAND_ATTEMPTS):
        assert policy.verdict(Failure.REFUSED, attempt) is Verdict.SETTLE
        assert policy.verdict(Failure.UNREADABLE, attempt) is Verdict.SETTLE
        assert policy.verdict(Failure.OUTAGE, attempt) is Verdict.RETRY


def test_a_command_fault_is_given_up_after_its_attempts() -> None:
    verdicts = [COMMANDS.verdict(Failure.FAULT, a) for a in range(1, COMMAND_ATTEMPTS + 2)]
    assert verdicts == [Verdict.RETRY] * (COMMAND_ATTEMPTS - 1) + [Verdict.GIVE_UP] * 2


def test_a_stage_task_fault_is_never_given_up() -> None:
    assert {STAGE_TASKS.verdict(Failure.FAULT, a) for a in range(1, 100)} == {Verdict.RETRY}
