"""Every `bash` and `python` example of the README, run in order as a reader runs them.

The examples are read from README.md itself, so an example that stops working fails here.
They share one session, like one reader's terminals: a private data folder, a free HTTP port
(`STRATEGIES_HTTP_PORT`), one working directory, the variables each bash example exports, and
one namespace for the python examples. A comment line right above a fence may say how to run
it: `<!-- readme-test: background ... -->` starts it in the background (a server, stopped at the
end) and `<!-- readme-test: skip REASON -->` leaves it out with that reason, reported as a skip.

`uv run X` is X inside the project's environment, which is the one this test runs in: the
examples get a `uv` that does just that, so a run never re-syncs the environment under the suite.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from infra.devservices.embedded_postgres import EmbeddedPostgres
from infra.devservices.ports import free_port
from tests.cli import run_cli

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
LANGUAGES = ("bash", "python")
SNIPPET_TIMEOUT_S = 900  # the demo of the quick start runs 10,000 traders
SERVER_START_S = 90
_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*(\S+)\s*(.*?)\s*-->\s*$")
# Run the examples' `uv run X` as X (here already in the project's environment).
_UV = 'uv() { if [ "$1" = run ]; then shift; "$@"; else command uv "$@"; fi; }\n'
_UV_EXEC = 'uv() { if [ "$1" = run ]; then shift; exec "$@"; else exec uv "$@"; fi; }\n'
_SHELL_STATE = {"_", "SHLVL", "PWD", "OLDPWD", "README_ENV_OUT"}


@dataclass(frozen=True)
class Snippet:
    line: int
    language: str
    code: str
    how: str = "run"
    reason: str = ""

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.language}"


def snippets(text: str) -> list[Snippet]:
    """The bash and python fences in order, each with the marker line right above it."""
    found, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        opened = _FENCE.match(lines[index])
        if not opened or not opened[1]:
            index += 1 if not opened else _skip_fence(lines, index)
            continue
        end = index + 1
        while not lines[end].startswith("```"):
            end += 1
        if opened[1] in LANGUAGES:
            marker = _MARKER.match(lines[index - 1]) if index else None
            how, reason = (marker[1], marker[2]) if marker else ("run", "")
            if how not in ("run", "background", "skip") or (how == "skip" and not reason):
                raise ValueError(f"README.md:{index}: unknown marker or a skip without reason")
            code = "\n".join(lines[index + 1 : end]) + "\n"
            found.append(Snippet(index + 1, opened[1], code, how, reason))
        index = end + 1
    return found


def _skip_fence(lines: list[str], index: int) -> int:
    """A fence without a language (a diagram): the number of lines up to its end."""
    end = index + 1
    while not lines[end].startswith("```"):
        end += 1
    return end + 1 - index


SNIPPETS = snippets(README.read_text())


class Session:
    """One reader: their environment, working directory, python namespace and servers."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.data_dir = home / "data"
        self.cwd = home / "work"
        self.cwd.mkdir()
        inherited = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
            and not (key.startswith("STRATEGIES_") and key != "STRATEGIES_ENV_FILE")
        }
        self.env = inherited | {
            "STRATEGIES_DATA_DIR": str(self.data_dir),
            "STRATEGIES_HTTP_PORT": str(free_port()),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.namespace: dict[str, Any] = {"__name__": "readme"}
        self.servers: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.done: set[int] = set()

    def run(self, snippet: Snippet, monkeypatch: pytest.MonkeyPatch) -> None:
        """Run `snippet`, after any earlier one not run yet (a test picked alone with -k)."""
        for earlier in SNIPPETS:
            if earlier.line > snippet.line:
                break
            if earlier.line in self.done or earlier.how == "skip":
                continue
            self.done.add(earlier.line)
            if earlier.how == "background":
                self._background(earlier)
            elif earlier.language == "bash":
                self._bash(earlier)
            else:
                self._python(earlier, monkeypatch)

    def _bash(self, snippet: Snippet) -> None:
        state = self.home / "env.out"
        script = f'{_UV}set -euo pipefail\n{snippet.code}\nenv -0 > "$README_ENV_OUT"\n'
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.cwd,
            env=self.env | {"README_ENV_OUT": str(state)},
            capture_output=True,
            text=True,
            timeout=SNIPPET_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"{snippet.name} failed:\n{done.stdout}\n{done.stderr}"
        exported = dict(item.split("=", 1) for item in state.read_text().split("\0") if item)
        self.env = {k: v for k, v in exported.items() if k not in _SHELL_STATE}

    def _python(self, snippet: Snippet, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(self.cwd)
        for key in set(os.environ) - set(self.env):
            monkeypatch.delenv(key)
        for key, value in self.env.items():
            monkeypatch.setenv(key, value)
        exec(compile(snippet.code, snippet.name, "exec"), self.namespace)

    def _background(self, snippet: Snippet) -> None:
        log = self.home / f"background-{snippet.line}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", f"{_UV_EXEC}{snippet.code}"],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append((process, log))
        self._wait_healthy(process, log)

    def _wait_healthy(self, process: subprocess.Popen[bytes], log: Path) -> None:
        url = f"http://127.0.0.1:{self.env['STRATEGIES_HTTP_PORT']}/health"
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the server exited:\n{log.read_text()}"
            try:
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail(f"{url} not 200 within {SERVER_START_S} s:\n{log.read_text()}")

    def close(self) -> None:
        for process, log in self.servers:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                code = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                raise
            assert code == 0, f"the server did not stop cleanly:\n{log.read_text()}"
        run_cli(self.env, "kafka", "stop", timeout=60)  # if an example failed before its stop
        EmbeddedPostgres(self.data_dir / "postgres").shutdown()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    reader = Session(tmp_path_factory.mktemp("readme"))
    try:
        yield reader
    finally:
        reader.close()


def test_the_readme_has_examples_and_every_one_is_run_or_skipped_with_a_reason() -> None:
    assert {s.language for s in SNIPPETS} == set(LANGUAGES)
    fences = sum(1 for line in README.read_text().splitlines() if _FENCE.match(line)) // 2
    assert fences > len(SNIPPETS)  # the diagrams are not examples
    assert all(s.reason for s in SNIPPETS if s.how == "skip")
    assert [s.how for s in SNIPPETS].count("background") == 1  # `strategies serve`


def test_the_extractor_refuses_a_skip_without_a_reason() -> None:
    with pytest.raises(ValueError, match="skip without reason"):
        snippets("text\n<!-- readme-test: skip -->\n```bash\ntrue\n```\n")
    assert snippets("<!-- readme-test: skip docker -->\n```bash\ndocker ps\n```\n") == [
        Snippet(2, "bash", "docker ps\n", "skip", "docker")
    ]


@pytest.mark.timeout(SNIPPET_TIMEOUT_S + SERVER_START_S + 60)
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.name for s in SNIPPETS])
def test_the_readme_example_runs(
    session: Session, snippet: Snippet, monkeypatch: pytest.MonkeyPatch
) -> None:
    if snippet.how == "skip":
        pytest.skip(f"{snippet.name}: {snippet.reason}")
    session.run(snippet, monkeypatch)
