"""What the projection consumer writes and the cheaper ways it folds: the JSON batch of an
upsert, `evolve`, the trade id and plain decimal strings (no database)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID, uuid4, uuid5

import pytest
from asyncpg.pgproto import pgproto
from hypothesis import given
from hypothesis import strategies as st

from projections.executions import ExecutionRow, trade_id
from projections.schema import codec, evolve
from projections.strategies import StrategyRow
from projections.traders import TraderRow, plain_decimal, plain_text

NOW = datetime(2026, 5, 29, 18, 56, 43, 123456, tzinfo=UTC)


def trader_row(**changes: object) -> TraderRow:
    row = TraderRow(
        id=uuid4(),
        platform_id="p1",
        strategy_id=uuid4(),
        participant_code="P1",
        account_label="label",
        auto_rebalance=True,
        status="active",
        positions={"BTC": "0.00083333", "ETH": "1"},
        cash=Decimal("12.3400"),
        created_at=NOW,
        updated_at=NOW,
        source_id=uuid4(),
        version=3,
    )
    return dataclasses.replace(row, **changes)


def strategy_row(metadata: dict[str, object]) -> StrategyRow:
    strategy = uuid4()
    return StrategyRow(strategy, "p1", uuid4(), "USD", metadata, NOW, NOW, strategy, 1)


def test_a_batch_is_one_json_array_of_row_objects_keyed_by_column() -> None:
    loaded_id = pgproto.UUID(uuid4().bytes)  # a row loaded from the table keeps asyncpg's UUID
    rows = [trader_row(), trader_row(id=loaded_id, updated_at=NOW.replace(tzinfo=None))]
    (first, second) = json.loads(codec(TraderRow).batch(rows))
    assert list(first) == list(TraderRow.TABLE.column_names)
    assert first["id"] == str(rows[0].id) and second["id"] == str(loaded_id)
    assert first["cash"] == "12.3400"  # a string: exact, never a float
    assert first["positions"] == {"BTC": "0.00083333", "ETH": "1"}  # nested, not text
    assert first["created_at"] == "2026-05-29T18:56:43.123456+00:00"
    assert second["updated_at"] == "2026-05-29T18:56:43.123456+00:00"  # naive reads as UTC


def test_a_clients_document_writes_nan_for_postgresql_to_refuse_not_null() -> None:
    """orjson writes NaN as null: a document keeps the stdlib's JSON, whose NaN PostgreSQL
    refuses (the event is poisoned, as it always was, not stored as a silent null)."""
    text = codec(StrategyRow).batch([strategy_row({"ratio": 0.1, "nested": [float("nan")]})])
    assert '"ratio": 0.1' in text and "[NaN]" in text


def test_a_clients_document_keeps_its_integers_past_64_bits() -> None:
    (written,) = json.loads(codec(StrategyRow).batch([strategy_row({"big": 2**70})]))
    assert written["metadata"] == {"big": 2**70}


def test_a_value_orjson_refuses_is_written_by_the_stdlib() -> None:
    row = trader_row(positions={"BTC": "1", "lone": "\ud800"})
    (written,) = json.loads(codec(TraderRow).batch([row]))
    assert written["positions"]["lone"] == "\ud800"  # for PostgreSQL to refuse, as before


def test_a_column_value_json_has_no_type_for_is_refused() -> None:
    with pytest.raises(TypeError, match="not a read-model column value"):
        codec(TraderRow).batch([trader_row(cash=object())])


def test_evolve_is_dataclasses_replace_and_refuses_a_field_the_row_lacks() -> None:
    row = trader_row()
    changes = {"status": "pending", "version": 4, "positions": {}}
    assert evolve(row, **changes) == dataclasses.replace(row, **changes)
    assert row.version == 3  # the original is left as it was
    with pytest.raises(TypeError, match="TraderRow has no field colour"):
        evolve(row, colour="red")


@given(st.uuids(), st.text(min_size=1, max_size=20).filter(lambda s: s.isprintable()))
def test_a_trade_id_is_the_uuid5_of_its_execution_and_asset(execution: UUID, asset: str) -> None:
    assert trade_id(execution, asset) == str(uuid5(execution, asset))


PLAIN_AND_NOT = [
    "0", "-0", "0.10", "-0.00", "12", "120.5000", "1E-8", "1e+3", "+5", "007.5", "-01",
    ".5", "5.", "1_000", " 1", "0.000000000000000001", "123456789012345678901234567890.5",
]  # fmt: skip


@pytest.mark.parametrize("text", PLAIN_AND_NOT)
def test_plain_text_writes_an_amount_as_plain_decimal_does(text: str) -> None:
    assert plain_text(text) == plain_decimal(Decimal(text))


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_plain_text_agrees_with_plain_decimal_on_any_decimal(value: Decimal) -> None:
    for text in (str(value), plain_decimal(value)):
        assert plain_text(text) == plain_decimal(Decimal(text))


def test_an_amount_that_is_not_a_decimal_is_still_refused() -> None:
    with pytest.raises(ArithmeticError):
        plain_text("12abc")


def test_a_row_read_from_a_record_equals_the_row_built_by_its_class() -> None:
    row = ExecutionRow(
        id=uuid4(),
        platform_id="p1",
        strategy_id=uuid4(),
        operation_id=uuid4(),
        trader_id=None,
        participant_code="X9",
        account_label="",
        status="rejected",
        status_reason="a",
        status_reasons=["a", "b"],
        instructions=[{"side": "buy", "price": None}],
        created_at=NOW,
        updated_at=NOW,
        source_id=uuid4(),
        version=2,
    )

    class Record(dict[str, object]):  # an asyncpg.Record reads like this: names, in order
        pass

    selected = Record(
        {
            **{f.name: getattr(row, f.name) for f in dataclasses.fields(row)},
            "instructions": json.dumps(row.instructions),  # jsonb is selected as text
            "trader_status": "active",  # a query may select more after the columns
        }
    )
    assert codec(ExecutionRow).row(selected) == row  # type: ignore[arg-type]
