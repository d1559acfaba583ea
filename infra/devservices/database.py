"""Which PostgreSQL the program talks to: the configured one, or the embedded server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from infra.devservices.embedded_postgres import EmbeddedPostgres
from infra.logging import get_logger, redact_url

if TYPE_CHECKING:
    from infra.settings import Settings

log = get_logger(__name__)


def embedded_postgres(settings: Settings, *, keep_running: bool = False) -> EmbeddedPostgres:
    """The handle on `<STRATEGIES_DATA_DIR>/postgres`, shared by `serve` and `strategies db`."""
    return EmbeddedPostgres(settings.postgres.data_dir, keep_running=keep_running)


@contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """Yield the URL to use; an embedded server started here is stopped on exit.

    An embedded server that another of our processes already runs is reused and left
    running, so `serve`, workers and tests can share one data folder.
    """
    if settings.postgres.url is not None:
        url = settings.postgres.url.get_secret_value()
        log.info("database.configured", url=redact_url(url))
        yield url
        return
    with embedded_postgres(settings) as server:
        yield server.url
