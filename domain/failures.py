"""What a consumer does when handling a message failed: one policy for the stage tasks and
the commands, so a refusal, an outage and a bug are told apart the same way everywhere.

The adapters only map the verdict: a command's refusal becomes a `rejected` result and a stage
task's a log line; a retry is the bus handing the record over again after a back-off; giving
up is a dead letter, which keeps the record for a replay. Which errors are outages is the
infrastructure's knowledge (`infra.transient`), so the caller passes that test in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from domain.errors import DomainError


class Failure(Enum):
    #: The domain said no: the same message always will.
    REFUSED = "refused"
    #: The message cannot be understood at all.
    UNREADABLE = "unreadable"
    #: A service this process needs is away (database, broker); the message is fine.
    OUTAGE = "outage"
    #: Anything else: most likely a bug this message sets off.
    FAULT = "fault"


class Verdict(Enum):
    #: Answer it (refusal or log line) and acknowledge the message: retrying cannot help.
    SETTLE = "settle"
    #: Let the bus hand the message over again after a back-off.
    RETRY = "retry"
    #: Stop retrying: dead-letter the message so it no longer holds up its partition.
    GIVE_UP = "give_up"


def classify(
    error: BaseException,
    *,
    outage: Callable[[BaseException], bool],
    unreadable: tuple[type[BaseException], ...] = (),
) -> Failure:
    if isinstance(error, DomainError):
        return Failure.REFUSED
    if unreadable and isinstance(error, unreadable):
        return Failure.UNREADABLE
    if outage(error):
        return Failure.OUTAGE
    return Failure.FAULT


@dataclass(frozen=True)
class FailurePolicy:
    """`fault_attempts`: how many times a message that sets off a fault is tried before it is
    given up; None tries it for as long as it fails."""

    fault_attempts: int | None

    def verdict(self, failure: Failure, attempt: int) -> Verdict:
        """What to do after `attempt` (1 for the first delivery) failed with `failure`."""
        if failure in (Failure.REFUSED, Failure.UNREADABLE):
            return Verdict.SETTLE
        if failure is Failure.OUTAGE:
            return Verdict.RETRY  # for as long as the outage lasts: the message is fine
        if self.fault_attempts is None or attempt < self.fault_attempts:
            return Verdict.RETRY
        return Verdict.GIVE_UP


#: A stage task is never given up: dropping it would strand its Operation half-way, while the
#: Operation's own failure paths (pricing_failed, execution_failed) end it cleanly.
STAGE_TASKS = FailurePolicy(fault_attempts=None)
#: A command that keeps setting off a fault is dead-lettered after a few attempts (a few seconds
#: with the bus's back-off, 0.1 s doubling), so one poison record cannot hold up its partition
#: for good.
COMMAND_ATTEMPTS = 5
COMMANDS = FailurePolicy(fault_attempts=COMMAND_ATTEMPTS)
