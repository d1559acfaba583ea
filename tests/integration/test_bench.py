"""The benchmark harness runs end to end and writes every figure the issue asks for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli import run_cli

pytestmark = pytest.mark.integration


def test_a_small_embedded_bench_prints_and_writes_its_figures(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    env["STRATEGIES_DATA_DIR"] = str(tmp_path)
    output = tmp_path / "figures.json"
    done = run_cli(
        env,
        "bench",
        *("--traders", "20,40", "--mode", "embedded", "--output", str(output)),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Benchmark" in done.stdout
    # A long step shows it is alive: a line per step as it ends, not only the final tables.
    assert "registered 40 participants in" in done.stdout
    assert "rebalance: 1 operation(s) settled in" in done.stdout
    figures = json.loads(output.read_text())
    assert figures["machine"]["cpus"] >= 1
    assert figures["ceilings"]["copy_rows_per_s"] > 0
    assert figures["machine"]["postgresql"]
    assert figures["machine"]["packages"]["eventsourcing"] != "absent"
    small, run = figures["runs"]
    assert (small["traders"], run["mode"], run["traders"]) == (20, "embedded", 40)
    assert 0 < run["events_vs_copy"] < 1 and run["messages_vs_broker"] is None
    assert {(g["operation"], g["traders"], g["versus"]) for g in figures["growth"]} == {
        (o["type"], 40, 20) for o in run["operations"]
    }
    assert all(g["ratio"] > 0 for g in figures["growth"])
    assert [o["type"] for o in run["operations"]] == [
        "enrollment",
        "top_up",
        "rebalance",
        "partial_sell",
        "liquidation",
    ]
    for operation in run["operations"]:
        assert operation["status"] == "settled"
        assert operation["seconds"] >= operation["execution_s"] >= 0
        assert operation["events"] > 0 and operation["per_trader_ms"] > 0
    assert run["peak_rss_mb"] > 0
    # The read models run in their own process in embedded mode: its CPU is counted apart.
    assert all(o["cpu_us_per_trader"]["project"] > 0 for o in run["operations"])


def test_a_small_kafka_bench_runs_its_worker_processes(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["STRATEGIES_DATA_DIR"] = str(tmp_path)
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    output = tmp_path / "figures.json"
    done = run_cli(
        env,
        "bench",
        *("--traders", "20", "--mode", "kafka", "--workers", "1"),
        *("--steps", "enroll,rebalance", "--output", str(output)),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = json.loads(output.read_text())["runs"]
    assert (run["mode"], run["workers"]) == ("kafka", 1)
    assert [(o["type"], o["status"]) for o in run["operations"]] == [
        ("enrollment", "settled"),
        ("rebalance", "settled"),
    ]
    assert run["messages_vs_broker"] is not None
