"""`strategies demo` as a newcomer runs it: the real CLI, the embedded default."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from infra.devservices.ports import free_port
from infra.tools.demo_story import Cast, story
from tests.cli import run_cli, start_cli

pytestmark = pytest.mark.e2e


def test_the_demo_runs_the_whole_story_and_prints_a_table(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env["STRATEGIES_DATA_DIR"] = str(tmp_path)
    env["STRATEGIES_METRICS_PORT"] = str(port := free_port())
    demo = start_cli(env, tmp_path / "demo", "demo", "--traders", "1200", "--chunk-size", "100")
    try:
        # scraped while the story runs: the stage histograms move between two scrapes
        counts = _stage_counts_while_running(demo, port)
        assert demo.wait(timeout=600) == 0, (tmp_path / "demo.err").read_text()[-3000:]
    finally:
        demo.kill()
        demo.wait()
    assert any(later > earlier for earlier, later in itertools.pairwise(counts)), counts
    out = (tmp_path / "demo.out").read_text()
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


def _stage_counts_while_running(demo: subprocess.Popen[str], port: int) -> list[float]:
    """`strategies_stage_call_duration_seconds_count` summed over every stage and call, at
    each scrape of the demo's /metrics until it exits."""
    counts: list[float] = []
    deadline = time.monotonic() + 600
    while demo.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as got:
                text = got.read().decode()
        except OSError:  # not listening yet, or gone
            time.sleep(0.1)
            continue
        series = re.findall(
            r"^strategies_stage_call_duration_seconds_count\{.*\} (\S+)$", text, re.M
        )
        counts.append(sum(float(value) for value in series))
        time.sleep(0.2)
    return counts


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
