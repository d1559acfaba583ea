"""The database every command works on, at this release's schema.

An embedded server (DATABASE_URL unset) belongs to this program, so it is migrated here and
README's first commands just work. A configured database belongs to its operator, who runs
`strategies db migrate` when deploying: a command finding it behind stops with one line and
exit code 2 instead of failing later on a missing table or column; one it cannot reach is
one line too (exit code 1), not a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import asyncpg
import typer

from infra.bootstrap.schema import SchemaBehindError, migrate_database, require_current
from infra.devservices.database import database_url
from infra.logging import redact_text

if TYPE_CHECKING:
    from infra.settings import Settings


def database_problem(exc: BaseException) -> str:
    """A database error as the one line every command prints: its kind and its message,
    a password in it blanked."""
    return f"database: {type(exc).__name__}: {redact_text(str(exc))}"


@contextmanager
def ready_database(settings: Settings) -> Iterator[str]:
    """`database_url`, once its schema is this release's (see the module's docstring)."""
    if settings.postgres.url is not None:  # checked first: the refusal is the only line
        try:
            asyncio.run(require_current(settings.postgres.url.get_secret_value()))
        except SchemaBehindError as behind:
            typer.echo(f"error: {behind}", err=True)
            raise typer.Exit(code=2) from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # unreachable, refused, wrong password: one line, as `db migrate` says it
            typer.echo(f"error: {database_problem(exc)}", err=True)
            raise typer.Exit(code=1) from None
    with database_url(settings) as url:
        if settings.postgres.url is None:
            asyncio.run(migrate_database(url))
        yield url
