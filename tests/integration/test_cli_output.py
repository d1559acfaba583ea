"""What the one-shot commands print, run as an operator runs them (a child process): aligned
tables with headers and whole values, `--json` for scripts, and no log lines in stdout."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from domain.catalogue import DEFAULT_INSTRUMENTS
from infra.postgres.master_key import generate_master_key
from tests.cli import run_cli

pytestmark = pytest.mark.integration

_OUTSIDE = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "STRATEGIES_LOG_LEVEL")


@pytest.fixture
def env(fresh_database_url: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in _OUTSIDE}
    return clean | {
        "DATABASE_URL": fresh_database_url,
        "STRATEGIES_MASTER_KEY": generate_master_key(),
        "STRATEGIES_LOG_FORMAT": "json",
    }


def ok(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = run_cli(env, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def table(stdout: str) -> list[dict[str, str]]:
    """Rows of an aligned table, read by the header's column positions; checks that every
    value starts exactly under its header (left-aligned) or ends under it (right-aligned)."""
    header, *lines = stdout.splitlines()
    starts = [m.start() for m in re.finditer(r"(?:(?<=^)|(?<=  ))\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        for start, cell in zip(starts, cells, strict=True):
            assert cell, f"empty cell in {line!r}"
            assert start == 0 or line[start - 2 : start] == "  " or line[start - 1] == " ", line
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def test_a_first_instrument_set_on_a_fresh_database_keeps_the_defaults(
    env: dict[str, str],
) -> None:
    ok(env, "instruments", "set", "LINK", "USD", "--precision", "0")
    listed = json.loads(ok(env, "instruments", "list", "--json").stdout)
    by_symbol = {i["symbol"]: i for i in listed}
    assert {i.symbol for i in DEFAULT_INSTRUMENTS} <= set(by_symbol)
    assert by_symbol["LINK/USD"]["precision"] == 0
    assert by_symbol["BTC/USD"] == {
        "symbol": "BTC/USD",
        "asset": "BTC",
        "quoted_currency": "USD",
        "precision": 8,
        "min_notional": "1.00",
        "status": "enabled",
    }
    rows = table(ok(env, "instruments", "list").stdout)
    assert len(rows) == len(DEFAULT_INSTRUMENTS)
    link = next(r for r in rows if r["SYMBOL"] == "LINK/USD")
    assert (link["PRECISION"], link["MIN NOTIONAL"], link["STATUS"]) == ("0", "1.00", "enabled")


def test_list_commands_print_whole_values_under_headers_or_json(env: dict[str, str]) -> None:
    created = json.loads(
        ok(env, "platform", "create", "PLAT-LONG-NAME-01", "--name", "Acme Wallet", "--json").stdout
    )
    assert set(created) == {"platform_id", "api_key", "secret", "passphrase"}
    ok(env, "platform", "create", "P2", "--name", "Second")
    rows = table(ok(env, "platform", "list").stdout)
    assert [r["PLATFORM"] for r in rows] == ["P2", "PLAT-LONG-NAME-01"]
    assert rows[1]["API KEYS"] == created["api_key"] and rows[1]["NAME"] == "Acme Wallet"
    listed = json.loads(ok(env, "platform", "list", "--json").stdout)
    assert listed[1]["api_keys"] == [created["api_key"]] and listed[1]["status"] == "active"

    url = "https://hooks.example/a-rather-long-path/that/must/not/be/cut"
    added = ok(env, "webhooks", "add", "P2", url).stdout
    subscription = re.search(r"subscription ([0-9a-f-]{36})", added)[1]  # type: ignore[index]
    (row,) = table(ok(env, "webhooks", "list", "P2").stdout)
    assert (row["SUBSCRIPTION"], row["URL"]) == (subscription, url)
    (sub,) = json.loads(ok(env, "webhooks", "list", "P2", "--json").stdout)
    assert sub["id"] == subscription and sub["legacy_headers"] is False
    log = json.loads(ok(env, "webhooks", "deliveries", "P2", subscription, "--json").stdout)
    assert log == {"message": [], "page": 1, "total_pages": 1}


def test_one_shot_commands_keep_log_lines_out_of_their_output(env: dict[str, str]) -> None:
    quiet = ok(env, "instruments", "list")
    assert not any(line.startswith("{") for line in quiet.stdout.splitlines())
    assert "database.configured" not in quiet.stderr  # INFO: below a one-shot's WARNING
    asked = ok(env | {"STRATEGIES_LOG_LEVEL": "INFO"}, "instruments", "list")
    assert "database.configured" in asked.stderr  # the operator's level wins
    assert asked.stdout == quiet.stdout  # and stdout still carries only the table
