"""`strategies demo` as a newcomer runs it: the real CLI, the embedded default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra.tools.demo_story import Cast, story
from tests.cli import run_cli

pytestmark = pytest.mark.e2e


def test_the_demo_runs_the_whole_story_and_prints_a_table(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env["STRATEGIES_DATA_DIR"] = str(tmp_path)
    done = run_cli(env, "demo", "--traders", "1200", "--chunk-size", "100", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for expected in ("enrollment", "top_up", "rebalance", "partial_sell", "liquidation"):
        assert expected in out
    assert "rebalance (policy)" in out  # the policy's run after the promotion and the move
    assert "cancelled_by_platform" in out or "Too late to cancel" in out
    assert "Preview of the rebalance (nothing written)" in out
    assert "participant_ineligible" in out  # the suspended participant was excluded
    assert "instrument_ineligible" in out  # the participant barred from SOL was excluded
    assert "…" not in out  # the summary prints every name whole
    assert "failed" not in out

    # the demo's database audits clean: nothing the in-process bus held was lost at exit
    for audit in (["audit", "replay"], ["audit", "verify"]):
        checked = run_cli(env, *audit, timeout=300)
        assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-2000:]


def test_the_story_excludes_a_few_and_funds_everyone() -> None:
    cast = Cast.of(2000)
    assert len(cast.codes) == 2000
    assert cast.suspended == ["DEMO-000997", "DEMO-001994"]
    assert cast.no_sol == ["DEMO-001009"]
    steps = story(cast)
    assert [s.command for s in steps] == [
        "enroll",
        "top_up",
        "rebalance",
        "partial_sell",
        "liquidate",
    ]
    assert "participants" not in steps[2].body  # the rebalance takes its scope from the roster
    enroll_total = sum(float(p["amount"]) for p in steps[0].body["participants"])
    assert float(cast.float_needed) >= enroll_total * 1.5
