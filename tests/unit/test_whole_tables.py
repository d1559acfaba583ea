"""Demo and bench summaries print every reason name and figure whole, whatever the width."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from infra.cli.bench import _growth_table, _table
from infra.cli.tables import print_whole
from infra.tools.bench import OperationFigures, RunFigures
from infra.tools.demo import OperationReport, summary_table

REPORT = OperationReport(
    title="Enrollment",
    type="enrollment",
    status="settled",
    status_reason="partial_success",
    in_scope=10_000,
    settled=9_997,
    skipped=0,
    rejected={"participant_ineligible": 2, "instrument_ineligible": 1},
    prices={"BTC": "65000.12345678", "ETH": "3000.12", "SOL": "150.1234"},
    seconds=15.3,
)


def printed(table: object, width: int) -> str:
    out = io.StringIO()
    print_whole(Console(file=out, width=width), table)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("width", [40, 80, 120])
def test_the_demo_summary_shows_reason_names_whole(width: int) -> None:
    text = printed(summary_table([REPORT]), width)
    for whole in (
        "instrument_ineligible: 1",
        "participant_ineligible: 2",
        "settled (partial_success)",
        "BTC 65000.12345678",
        "locked prices (USD)",
    ):
        assert whole in text, text
    assert "…" not in text


def test_the_bench_tables_show_every_figure_whole() -> None:
    figures = OperationFigures(100_000, "partial_sell", "settled/skipped", 177.1, 70, 1, 84, 0.4, 9)
    runs = [
        RunFigures("embedded", 0, 10_000, [figures], 213.0),
        RunFigures("embedded", 0, 100_000, [figures], 374.0),
    ]
    text = printed(_table(runs, {"copy_rows_per_s": 680_000.0}), 80)
    text += printed(_growth_table(runs), 80)
    for whole in ("partial_sell", "settled/skipped", "projection lag s", "100,000", "versus N"):
        assert whole in text, text
    assert "…" not in text
