"""Every command refuses a bad configuration the same way: one line per bad variable (or per
missing key), exit 2, no traceback; a `.env` file is read and the environment wins over it."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from infra.postgres.master_key import generate_master_key
from tests.cli import run_cli

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration

#: No server needs to answer: every command must stop before it connects to anything.
UNREACHABLE_DATABASE = "postgresql://app:pw@127.0.0.1:9/strategies"


def _env(tmp_path: Path, **variables: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not (name.startswith("STRATEGIES_") and name != "STRATEGIES_ENV_FILE")
        and name not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    }
    return {**env, "STRATEGIES_DATA_DIR": str(tmp_path), **variables}


def _refused(env: dict[str, str], *command: str) -> list[str]:
    done = run_cli(env, *command, timeout=60)
    assert done.returncode == 2, (command, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and not done.stdout, done.stderr
    return done.stderr.splitlines()


@pytest.mark.parametrize(
    ("command", "bad"),
    [
        (("serve",), {"STRATEGIES_VENUE_SPREAD": "wide"}),
        (("worker", "all"), {"STRATEGIES_VENUE_SEED": "x", "STRATEGIES_HTTP_PORT": "0"}),
        (("worker", "pricing"), {"STRATEGIES_VENUE_QUOTE_TTL_S": "-1"}),
        (("demo",), {"STRATEGIES_VENUE_REJECT_ORDERS": "BTC/USD"}),
        (("bench",), {"STRATEGIES_CHUNK_SIZE": "0", "STRATEGIES_MASTER_KEY": "short"}),
        (("db", "start"), {"STRATEGIES_LOG_LEVEL": "loud"}),
        (("platform", "list"), {"DATABASE_URL": "mysql://x"}),
        (("master-key", "rotate"), {"STRATEGIES_MASTER_KEY_PREVIOUS": "nope"}),
        (("projections", "rebuild"), {"STRATEGIES_VENUE_LATENCY_MS": "-5"}),
    ],
)
def test_a_bad_variable_is_one_line_and_exit_2_in_every_command(
    tmp_path: Path, command: tuple[str, ...], bad: dict[str, str]
) -> None:
    lines = _refused(_env(tmp_path, **bad), *command)
    assert lines[0] == "error: invalid configuration in the environment:"
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == sorted(bad)
    assert "short" not in "".join(lines)  # a key is never echoed


@pytest.mark.parametrize(
    "command",
    [
        ("serve",),
        ("worker", "webhooks"),
        ("webhooks", "list", "PLAT01"),
        ("platform", "create", "PLAT01", "--name", "A"),
        ("master-key", "rotate"),
    ],
)
def test_a_command_that_needs_the_master_key_says_how_to_make_one(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = _env(
        tmp_path,
        DATABASE_URL=UNREACHABLE_DATABASE,
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
    )
    (line,) = _refused(env, *command)
    assert line.startswith("error: STRATEGIES_MASTER_KEY must be set when DATABASE_URL is")
    assert "`strategies master-key generate`" in line


def test_a_dotenv_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    key = generate_master_key()
    (tmp_path / ".env").write_text(
        f"STRATEGIES_TOPIC_PREFIX=from-dotenv\nSTRATEGIES_MASTER_KEY={key}\n"
    )
    env = _env(tmp_path, STRATEGIES_ENV_FILE=str(tmp_path / ".env"))

    done = run_cli(env, "asyncapi")
    assert done.returncode == 0, done.stderr
    assert '"from-dotenv.commands"' in done.stdout

    done = run_cli({**env, "STRATEGIES_TOPIC_PREFIX": "from-env"}, "asyncapi")
    assert done.returncode == 0, done.stderr
    assert '"from-env.commands"' in done.stdout and "from-dotenv" not in done.stdout

    (tmp_path / ".env").write_text("STRATEGIES_VENUE_SPREAD=2\n")
    assert _refused(env, "asyncapi")[1:] == [
        "  STRATEGIES_VENUE_SPREAD: Input should be less than 1 (got '2')"
    ]


@pytest.mark.parametrize("command", [("worker", "relay"), ("platform", "list")])
def test_a_database_it_cannot_reach_is_one_line_and_exit_1(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    env = _env(
        tmp_path,
        DATABASE_URL=UNREACHABLE_DATABASE,
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
        STRATEGIES_MASTER_KEY=generate_master_key(),
    )
    done = run_cli(env, *command, timeout=60)
    assert done.returncode == 1, (done.stdout, done.stderr)
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: database: ") and "Traceback" not in done.stderr
    assert ":pw@" not in line  # the password is never echoed
