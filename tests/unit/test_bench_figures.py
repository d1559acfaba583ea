"""The benchmark's own arithmetic: requests split as a platform would, growth and shares."""

from __future__ import annotations

from infra.tools.bench import OperationFigures, RunFigures, _per_call, growth, ratios


def figures(traders: int, seconds: float, kind: str = "rebalance") -> OperationFigures:
    return OperationFigures(traders, kind, "settled", seconds, 0.0, 0.0, 0.0, 0.0, traders * 2)


def test_a_request_names_at_most_the_configured_participants() -> None:
    codes = [str(i) for i in range(25_001)]
    parts = list(_per_call({"allocations": []}, codes, "5.00", False, 10_000))
    assert [len(p["participants"]) for p in parts] == [10_000, 10_000, 5_001]
    assert [c["participant_code"] for p in parts for c in p["participants"]] == codes
    assert all(p["allocations"] == [] for p in parts)
    assert all(c["amount"] == "5.00" for p in parts for c in p["participants"])
    halves = _per_call({}, codes, "1.00", True, 12_500)
    assert [len(p["participants"]) for p in halves] == [12_500, 12_500, 1]
    assert list(_per_call({"all": True}, codes, None, False, 10_000)) == [{"all": True}]


def test_growth_compares_each_n_with_the_next_smaller_of_its_mode() -> None:
    tiny = RunFigures("kafka", 2, 1_000, [figures(1_000, 0.5)])
    small = RunFigures("kafka", 2, 10_000, [figures(10_000, 10.0)])
    big = RunFigures("kafka", 2, 100_000, [figures(100_000, 130.0)])
    other = RunFigures("embedded", 0, 1_000, [figures(1_000, 1.0)])
    first, second = growth([tiny, small, big, other])
    assert (first["traders"], first["versus"], round(first["ratio"], 6)) == (10_000, 1_000, 2.0)
    assert (second["mode"], second["traders"], second["versus"]) == ("kafka", 100_000, 10_000)
    assert round(second["ratio"], 6) == 1.3


def test_shares_of_the_ceilings() -> None:
    run = RunFigures("kafka", 1, 1_000, [figures(1_000, 2.0)])  # 1,000 events/s
    run.rows_written = 6_000  # 3,000 rows/s, 6 per trader in its one operation
    shares = ratios(run, {"copy_rows_per_s": 100_000.0, "broker": {"consume_per_s": 4_000.0}})
    assert shares == {"events_vs_copy": 0.01, "rows_vs_copy": 0.03, "messages_vs_broker": 0.25}
    assert run.rows_per_trader_per_operation == 6.0
    embedded = RunFigures("embedded", 0, 1_000, [figures(1_000, 2.0)])
    assert ratios(embedded, {"copy_rows_per_s": 100_000.0})["messages_vs_broker"] is None
