"""The process's log lines as JSON, in a buffer, for one test; the root logger is given back."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from infra.logging import configure_logging
from infra.settings import LogFormat, Settings


@contextmanager
def json_log_lines() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging(Settings(log_format=LogFormat.JSON), stream=buffer, force=True)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
