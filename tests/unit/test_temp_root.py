"""Each test session's temporary files live in a folder of its own (tests/fixtures/temp_root)."""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path

import pytest


def test_this_session_keeps_its_temporary_files_out_of_the_shared_per_user_root(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.getbasetemp()
    chosen = os.environ.get("PYTEST_DEBUG_TEMPROOT")
    root = Path(chosen or tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    if chosen:  # the caller chose: respected
        assert base.is_relative_to(root)
    else:  # another session starting would reset that root to 0700 under our servers
        assert not base.is_relative_to(root), base
        # Under xdist each worker has a folder inside the session's (`popen-gw0`).
        session = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        assert session.name.startswith("portfolio-strategies-tests-"), base
