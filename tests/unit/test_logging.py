"""Log lines: one renderer for structlog and stdlib, correlation ids, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from infra.logging import (
    bind_correlation_id,
    configure_logging,
    current_correlation_id,
    get_logger,
    redact_url,
)
from infra.settings import LogFormat, Settings

Capture = Callable[[LogFormat], io.StringIO]


@pytest.fixture
def capture() -> Iterator[Capture]:
    """Point logging at a buffer for one test, then give the root logger back to pytest."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level

    def configure(log_format: LogFormat) -> io.StringIO:
        buffer = io.StringIO()
        settings = Settings(log_format=log_format, log_level="DEBUG")
        configure_logging(settings, stream=buffer, force=True)
        return buffer

    yield configure
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def json_lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line]


def test_json_line_carries_the_correlation_id_bound_around_it(capture: Capture) -> None:
    buffer = capture(LogFormat.JSON)
    log = get_logger("tests.logging")

    with bind_correlation_id("req-42") as correlation_id:
        log.info("order.priced", order_id="o-1")
    log.info("after.request")

    inside, outside = json_lines(buffer)
    assert correlation_id == "req-42"
    assert inside["correlation_id"] == "req-42"
    assert inside["event"] == "order.priced"
    assert inside["order_id"] == "o-1"
    assert inside["level"] == "info"
    assert inside["logger"] == "tests.logging"
    assert str(inside["timestamp"]).endswith("Z")  # ISO 8601, UTC
    assert "correlation_id" not in outside


def test_stdlib_records_get_the_same_json_and_correlation_id(capture: Capture) -> None:
    buffer = capture(LogFormat.JSON)
    with bind_correlation_id("req-7"):
        logging.getLogger("uvicorn.error").warning("worker %s restarted", 3)

    (line,) = json_lines(buffer)
    assert line["event"] == "worker 3 restarted"
    assert line["logger"] == "uvicorn.error"
    assert line["level"] == "warning"
    assert line["correlation_id"] == "req-7"


def test_nested_binding_restores_the_outer_id() -> None:
    with bind_correlation_id("outer"):
        with bind_correlation_id("inner"):
            assert current_correlation_id() == "inner"
        assert current_correlation_id() == "outer"
    assert current_correlation_id() is None


def test_a_fresh_correlation_id_is_made_when_none_is_given() -> None:
    with bind_correlation_id() as first, bind_correlation_id() as second:
        assert first != second
        assert current_correlation_id() == second


def test_console_mode_is_readable_text(capture: Capture) -> None:
    buffer = capture(LogFormat.CONSOLE)
    with bind_correlation_id("req-9"):
        get_logger("tests.logging").info("order.priced", order_id="o-1")

    output = buffer.getvalue()
    assert "order.priced" in output
    assert "correlation_id=req-9" in output
    assert "order_id=o-1" in output
    assert not output.lstrip().startswith("{")


def test_auto_mode_writes_json_when_not_a_terminal(capture: Capture) -> None:
    buffer = capture(LogFormat.AUTO)  # StringIO is not a TTY
    get_logger("tests.logging").info("hello")
    assert json_lines(buffer)[0]["event"] == "hello"


@pytest.mark.parametrize("log_format", [LogFormat.JSON, LogFormat.CONSOLE])
def test_passwords_are_redacted_everywhere(capture: Capture, log_format: LogFormat) -> None:
    buffer = capture(log_format)
    log = get_logger("tests.logging")
    url = "postgresql://app:s3cret@db:5432/strategies"

    log.info("database.configured", url=url, password="s3cret")
    logging.getLogger("eventsourcing").error("could not connect to %s", url)
    try:
        raise ConnectionError(f"cannot reach {url}")
    except ConnectionError:
        log.exception("database.unreachable")

    output = buffer.getvalue()
    assert "s3cret" not in output
    assert "postgresql://app:***@db:5432/strategies" in output


def test_configure_logging_twice_keeps_the_first_configuration(capture: Capture) -> None:
    buffer = capture(LogFormat.JSON)
    configure_logging(Settings(log_format=LogFormat.CONSOLE), stream=io.StringIO())
    get_logger("tests.logging").info("still.json")
    assert json_lines(buffer)[0]["event"] == "still.json"


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("postgresql://app:p%40ss@db:5432/x?sslmode=require") == (
        "postgresql://app:***@db:5432/x?sslmode=require"
    )
    assert redact_url("postgresql://postgres@127.0.0.1:5432/x") == (
        "postgresql://postgres@127.0.0.1:5432/x"
    )
