"""structlog set-up: one renderer for our loggers and for the stdlib ones we depend on.

Every line carries an ISO UTC timestamp, the level, the logger name and whatever is bound in
the structlog contextvars, which is how one request or one message keeps its correlation id
across uvicorn, our adapters and the libraries they call; inside a span (`infra.tracing`),
its `trace_id` too. Secrets are scrubbed in the shared
chain, so no renderer can print a database password even when a library logs a DSN.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import orjson
import structlog
import structlog.tracebacks
from opentelemetry import trace

from infra.settings import LogFormat

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

    from infra.settings import Settings

CORRELATION_ID = "correlation_id"
REDACTED = "***"
# Accepted as a correlation id as is (X-Request-ID, a record's header); anything else (too
# long, odd bytes) gets a fresh one, so that a sender cannot inject text into our logs.
CORRELATION_ID_PATTERN = r"[A-Za-z0-9._:@/+=-]{1,128}"
_ACCEPTABLE_ID = re.compile(CORRELATION_ID_PATTERN)

# Libraries that configure their own handlers; we take their records over instead.
_ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "aiokafka", "eventsourcing")
# user:password@ inside any URL-like string (postgresql://, postgres+asyncpg://, kafka...).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?=@)")
_SECRET_KEYS = re.compile(
    r"(^|_)(password|passwd|secret|token|api_?key|authorization)$", re.IGNORECASE
)

_configured = False


def redact_url(url: str) -> str:
    """The URL with its password replaced, fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    userinfo = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{REDACTED}@{netloc[2]}"))


def redact_text(text: str) -> str:
    return _URL_PASSWORD.sub(rf"\g<head>{REDACTED}", text)


def _redact(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: REDACTED if _is_secret(key) else _redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and _SECRET_KEYS.search(key) is not None


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: blank secret-named keys and URL passwords anywhere in the event."""
    return {
        key: REDACTED if _is_secret(key) else _redact(value) for key, value in event_dict.items()
    }


def _drop_color_message(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """uvicorn passes an ANSI-coloured copy of each message as `extra`; the plain one suffices."""
    event_dict.pop("color_message", None)
    return event_dict


def _add_trace_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """The trace a line was logged in (`infra.tracing`), to find its spans from the line."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
    return event_dict


def _orjson_dumps(value: Any, **_: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_trace_id,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.StackInfoRenderer(),
        redact_secrets,
    ]


def _renderer_chain(log_format: LogFormat, stream: TextIO) -> list[Processor]:
    if log_format is LogFormat.AUTO:
        log_format = LogFormat.CONSOLE if stream.isatty() else LogFormat.JSON
    if log_format is LogFormat.CONSOLE:
        # Never the default rich formatter: it prints local variables, secrets included.
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        return [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,  # tracebacks are rendered late; their messages can hold a DSN
            renderer,
        ]
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        # Structured tracebacks without local variables: locals would print secrets.
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        ),
        redact_secrets,  # tracebacks are rendered late; their messages can hold a DSN
        structlog.processors.JSONRenderer(serializer=_orjson_dumps),
    ]


#: Whether loggers keep their first configuration. The test suite turns it off: a cached
#: logger never reaches `structlog.testing.capture_logs`, so which test first logged through
#: a module's logger would decide whether a later test can see its lines.
CACHE_LOGGERS = True


def configure_logging(
    settings: Settings, *, stream: TextIO | None = None, force: bool = False
) -> None:
    """Install the renderer on the root logger; later calls are no-ops unless `force`."""
    global _configured
    if _configured and not force:
        return
    stream = stream or sys.stderr
    shared = _shared_processors()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared, processors=_renderer_chain(settings.log.format, stream)
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log.level)
    for name in _ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Safe to cache: the format lives in the handler, which `force` replaces.
        cache_logger_on_first_use=CACHE_LOGGERS,
    )
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bind_correlation_id(value: str | None = None) -> Iterator[str]:
    """Tag every log line in this context (request, message) with one correlation id.

    The previous id comes back on exit, so nested handling (a message consumed while
    serving a request in tests) does not leak ids between units of work.
    """
    correlation_id = value or str(uuid4())
    with structlog.contextvars.bound_contextvars(**{CORRELATION_ID: correlation_id}):
        yield correlation_id


def acceptable_correlation_id(value: str | None) -> str | None:
    """`value` if it may stand as a correlation id on our log lines, else None."""
    return value if value is not None and _ACCEPTABLE_ID.fullmatch(value) else None


def current_correlation_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get(CORRELATION_ID)
    return value if isinstance(value, str) else None
