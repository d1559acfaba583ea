"""The administration commands against a real database, as an operator runs them."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.cli import run_cli

pytestmark = pytest.mark.integration


def strategies(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return run_cli(env, *args)


def test_an_operator_funds_the_float_registers_participants_and_halts_an_instrument(
    fresh_database_url: str,
) -> None:
    done = strategies(fresh_database_url, "float", "deposit", "PLAT01", "USD", "1000.00")
    assert done.returncode == 0, done.stderr
    assert "balance 1000.00" in done.stdout
    again = strategies(fresh_database_url, "float", "deposit", "PLAT01", "USD", "0.01")
    assert "balance 1000.01" in again.stdout
    refused = strategies(fresh_database_url, "float", "deposit", "PLAT01", "USD", "0")
    assert refused.returncode == 2 and "positive" in refused.stderr

    done = strategies(
        fresh_database_url, "participants", "set", "PLAT01", "A", "B", "--restrict", "SOL"
    )
    assert (done.returncode, done.stdout.strip()) == (0, "2 participant(s) changed")

    done = strategies(
        fresh_database_url,
        "instruments",
        "set",
        "XRP",
        "USD",
        "--precision",
        "6",
        "--status",
        "halted",
    )
    assert done.returncode == 0, done.stderr
    listed = strategies(fresh_database_url, "instruments", "list").stdout
    assert "XRP/USD" in listed and "halted" in listed

    rebuilt = strategies(fresh_database_url, "projections", "rebuild", "--schema", "scratch")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt the read models in schema 'scratch'" in rebuilt.stdout
