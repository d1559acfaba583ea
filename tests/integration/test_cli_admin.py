"""The administration commands against a real database, as an operator runs them."""

from __future__ import annotations

import os
import subprocess

import pytest

from infra.postgres.master_key import generate_master_key
from tests.cli import run_cli

pytestmark = pytest.mark.integration


def strategies(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "STRATEGIES_MASTER_KEY": MASTER_KEY}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return run_cli(env, *args)


MASTER_KEY = generate_master_key()


def registered(database_url: str, platform_id: str) -> None:
    made = strategies(database_url, "platform", "create", platform_id, "--name", "CLI tests")
    assert made.returncode == 0, made.stderr


def test_an_operator_funds_the_float_registers_participants_and_halts_an_instrument(
    fresh_database_url: str,
) -> None:
    registered(fresh_database_url, "PLAT01")
    deposit = ("float", "deposit", "PLAT01", "USD")
    done = strategies(fresh_database_url, *deposit, "1000.00", "--reference", "W1")
    assert done.returncode == 0, done.stderr
    assert "balance 1000.00" in done.stdout
    again = strategies(fresh_database_url, *deposit, "0.01", "--reference", "W2")
    assert "balance 1000.01" in again.stdout
    refused = strategies(fresh_database_url, *deposit, "0", "--reference", "W3")
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


def refused(done: subprocess.CompletedProcess[str], code: str) -> None:
    """Exit 2 with one line naming the error's code, never a traceback."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"({code})" in lines[0], done.stderr


def test_bad_codes_and_unknown_platforms_are_refused_in_one_line(fresh_database_url: str) -> None:
    registered(fresh_database_url, "PLAT02")
    run = lambda *args: strategies(fresh_database_url, *args)  # noqa: E731
    # argv cannot carry a NUL: the other control characters stand for it here
    for asset in ("BT\x01C", "btc", "BTC\x7f", "B" * 17, "BTC\n"):
        refused(run("instruments", "set", asset, "USD"), "invalid_request")
    refused(run("instruments", "set", "XRP", "US\x01D"), "unsupported_currency")
    assert "XRP/USD" not in run("instruments", "list").stdout
    for code in ("P\x01", " P1", "P" * 65):
        refused(run("participants", "set", "PLAT02", "OK", code), "invalid_request")
    refused(run("participants", "set", "PLAT02", "OK", "--restrict", "s\x01l"), "invalid_request")
    refused(run("float", "deposit", "PLAT02", "USD", "1.00", "--reference", "W\x01"),
            "invalid_request")  # fmt: skip

    for args in (
        ("float", "deposit", "NOPE01", "USD", "1.00", "--reference", "W1"),
        ("participants", "set", "NOPE01", "OK"),
    ):
        refused(run(*args), "platform_not_found")
    hook = run("webhooks", "add", "NOPE01", "https://hooks.example.com/h")
    assert hook.returncode == 1 and "platform_not_found" in hook.stderr, hook.stderr
    assert "Traceback" not in hook.stderr


def test_a_deposit_reference_credits_once(fresh_database_url: str) -> None:
    registered(fresh_database_url, "PLAT03")
    deposit = ("float", "deposit", "PLAT03", "USD")
    first = strategies(fresh_database_url, *deposit, "500.00", "--reference", "WIRE-1")
    assert first.returncode == 0 and "balance 500.00" in first.stdout, first.stderr
    again = strategies(fresh_database_url, *deposit, "500.00", "--reference", "WIRE-1")
    assert again.returncode == 0, again.stderr
    assert "already recorded" in again.stdout and "balance 500.00" in again.stdout
    other = strategies(fresh_database_url, *deposit, "5.00", "--reference", "WIRE-1")
    refused(other, "idempotency_conflict")
    unnamed = strategies(fresh_database_url, *deposit, "5.00")
    assert unnamed.returncode == 2 and "--reference" in unnamed.stderr
