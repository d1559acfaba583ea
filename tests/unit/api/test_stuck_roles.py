"""When `/health` calls a live role stuck: work waited on it `after_s` and none of its
processes made progress (or started) within `after_s`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.pipeline_state import Need, quiet_for
from infra.postgres.heartbeats import RoleState

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
AFTER = 300.0


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def role(progress: float | None, started: float, live: int = 1) -> RoleState:
    return RoleState(
        "credit-check",
        live,
        NOW,
        None if progress is None else ago(progress),
        ago(started) if live else None,
    )


def test_a_role_quiet_while_work_waited_long_is_stuck() -> None:
    waiting = Need("an Operation is validating", ago(400))
    assert quiet_for(waiting, role(progress=350, started=3600), NOW, AFTER) == 350
    assert quiet_for(waiting, role(progress=None, started=3600), NOW, AFTER) == 3600


def test_recent_progress_a_fresh_process_or_fresh_work_is_not_stuck() -> None:
    waiting = Need("an Operation is validating", ago(400))
    assert quiet_for(waiting, role(progress=10, started=3600), NOW, AFTER) is None
    assert quiet_for(waiting, role(progress=None, started=10), NOW, AFTER) is None
    fresh = Need("an Operation is validating", ago(5))  # after a long idle: not stuck yet
    assert quiet_for(fresh, role(progress=3600, started=7200), NOW, AFTER) is None


def test_work_of_unknown_age_counts_on_progress_alone() -> None:
    unknown = Need("published events not yet in the read models")
    assert quiet_for(unknown, role(progress=301, started=7200), NOW, AFTER) == 301
    assert quiet_for(unknown, role(progress=299, started=7200), NOW, AFTER) is None


def test_a_role_without_live_processes_is_missing_not_stuck() -> None:
    waiting = Need("an Operation is validating", ago(400))
    assert quiet_for(waiting, role(progress=3600, started=0, live=0), NOW, AFTER) is None
    assert quiet_for(waiting, None, NOW, AFTER) is None
