"""The SQL the tables generate, and the JSON objects the queries return (no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from infra.postgres.migrations import migrations
from projections.executions import EXECUTIONS, ExecutionRow
from projections.queries import _where, check_page, execution_resource, trader_resource
from projections.schema import quoted
from projections.traders import TraderRow, is_visible

NOW = datetime(2026, 5, 29, 18, 56, 43, tzinfo=UTC)


@pytest.mark.parametrize("name", ["", "1abc", "a-b", 'x"; DROP TABLE t; --', "a" * 64])
def test_a_schema_name_that_is_not_a_plain_identifier_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="schema name"):
        quoted(name)


def test_upserts_only_move_a_row_forward_within_its_own_stream() -> None:
    sql = EXECUTIONS.upsert("scratch")
    assert sql.startswith('INSERT INTO "scratch".executions AS r')
    assert "WHERE r.version < EXCLUDED.version AND r.source_id = EXCLUDED.source_id" in sql
    # A batch is one JSON array, passed as text whatever the pool's codecs.
    assert "FROM json_to_recordset($1::text::json) AS u(id uuid, platform_id text," in sql
    assert "status_reasons text[], instructions jsonb," in sql


def test_every_list_filter_and_the_sort_order_have_an_index() -> None:
    ddl = "".join(migration.sql for migration in migrations())
    for table, column in [
        ("executions", "strategy_id"),
        ("executions", "operation_id"),
        ("executions", "trader_id"),
        ("executions", "participant_code"),
        ("executions", "status"),
        ("traders", "strategy_id"),
        ("traders", "participant_code"),
        ("traders", "auto_rebalance"),
        ("operations", "strategy_id"),
        ("operations", "type"),
        ("operations", "status"),
    ]:
        assert f"public.{table} (platform_id, {column}, created_at DESC, id)" in ddl
    assert "public.operations (platform_id, request_id)" in ddl
    assert "public.operations (platform_id, created_at DESC, id)" in ddl


def test_conditions_become_parameters_and_absent_filters_vanish() -> None:
    strategy = uuid4()
    where, params = _where("p1", [("strategy_id", "=", strategy), ("status", "=", None)])
    assert (where, params) == ("platform_id = $1 AND strategy_id = $2", ["p1", strategy])


@pytest.mark.parametrize(("page", "size"), [(0, 50), (1, 0), (1, 201)])
def test_pages_start_at_one_and_hold_at_most_two_hundred(page: int, size: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        check_page(page, size)


def rejected_row(trader_id: UUID | None, strategy: UUID, operation: UUID) -> ExecutionRow:
    return ExecutionRow(
        id=uuid4(),
        platform_id="p1",
        strategy_id=strategy,
        operation_id=operation,
        trader_id=trader_id,
        participant_code="X9",
        account_label=str(strategy) if trader_id else "",
        status="rejected",
        status_reason="trader_not_found",
        status_reasons=["trader_not_found"],
        instructions=[],
        created_at=NOW,
        updated_at=NOW,
        source_id=uuid4(),
        version=2,
    )


def test_an_execution_rejected_before_its_trader_existed_shows_empty_strings() -> None:
    strategy, operation = uuid4(), uuid4()
    item = execution_resource(rejected_row(None, strategy, operation), trader_visible=True)
    assert (item["trader_id"], item["account_label"]) == ("", "")
    assert (item["strategy_id"], item["operation_id"]) == (str(strategy), str(operation))
    assert item["created_at"] == "2026-05-29T18:56:43Z"
    assert "platform_id" not in item and "version" not in item


def test_an_execution_names_its_trader_only_while_the_trader_is_visible() -> None:
    strategy, trader = uuid4(), uuid4()
    row = rejected_row(trader, strategy, uuid4())
    hidden = execution_resource(row, trader_visible=False)
    assert (hidden["trader_id"], hidden["account_label"]) == ("", "")
    shown = execution_resource(row, trader_visible=True)
    assert (shown["trader_id"], shown["account_label"]) == (str(trader), str(strategy))


@pytest.mark.parametrize(
    ("status", "visible"),
    [(None, False), ("pending", False), ("active", True), ("liquidated", True)],
)
def test_only_a_trader_past_its_first_enrollment_is_visible(
    status: str | None, visible: bool
) -> None:
    assert is_visible(status) is visible


def test_a_trader_shows_its_extensions_as_strings() -> None:
    row = TraderRow(
        id=uuid4(),
        platform_id="p1",
        strategy_id=uuid4(),
        participant_code="P1",
        account_label="label",
        auto_rebalance=True,
        status="active",
        positions={"BTC": "0.00000001"},
        cash=Decimal("1E-2"),
        created_at=NOW,
        updated_at=NOW,
        source_id=uuid4(),
        version=3,
    )
    item = trader_resource(row)
    assert (item["positions"], item["cash"], item["status"]) == (
        {"BTC": "0.00000001"},
        "0.01",
        "active",
    )
