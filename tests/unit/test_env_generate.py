"""`strategies env generate`: a complete .env with fresh secrets the settings accept, written
only where nothing would be lost."""

from __future__ import annotations

import base64
import io
import stat
from pathlib import Path

from dotenv import dotenv_values
from typer.testing import CliRunner

from infra.cli.env import SECRETS
from infra.cli.main import app
from infra.settings import Settings

runner = CliRunner()


def generated(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["env", "generate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_it_prints_every_secret_fresh_and_valid_for_the_settings(tmp_path: Path) -> None:
    code, first, _ = generated()
    assert code == 0
    (tmp_path / "a.env").write_text(first)
    values = dotenv_values(tmp_path / "a.env")
    assert set(SECRETS) <= set(values)
    assert all(values[name] for name in SECRETS)
    assert len(base64.b64decode(values["STRATEGIES_MASTER_KEY"] or "", validate=True)) == 32
    assert (values["POSTGRES_PASSWORD"] or "").isalnum()  # it goes into a URL unescaped
    settings = Settings(
        _env_file=tmp_path / "a.env",
        database_url=f"postgresql://strategies:{values['POSTGRES_PASSWORD']}@db/strategies",
    )
    assert settings.admin_token is not None
    # the optional lines are comments: compose's defaults apply
    assert set(values) == set(SECRETS)
    _, second, _ = generated()
    again = dotenv_values(stream=io.StringIO(second))
    assert again.keys() == values.keys()
    assert all(again[name] != values[name] for name in SECRETS)


def test_a_file_is_private_and_never_replaced_without_force(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    assert generated("--output", str(target))[0] == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    before = target.read_text()

    code, _, err = generated("--output", str(target))
    assert code == 2 and "exists" in err
    assert target.read_text() == before

    code, _, err = generated("--output", str(target), "--force")
    assert code == 0 and "kept the previous file" in err
    (kept,) = tmp_path.glob(".env.*.bak")
    assert kept.read_text() == before
    assert target.read_text() != before


def test_a_missing_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = generated("--output", str(tmp_path / "nowhere" / ".env"))
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
