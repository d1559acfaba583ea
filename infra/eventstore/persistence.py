"""eventsourcing's persistence settings, derived from the one database URL we configure.

eventsourcing reads `PERSISTENCE_MODULE` and `POSTGRES_*` from the environment mapping an
Application is given (they override `os.environ`). Keys can also be prefixed with the upper-
cased application name (`TRADING_POSTGRES_DBNAME`); we only produce the unprefixed ones.
Note the table switch is `CREATE_TABLE`, not `POSTGRES_CREATE_TABLE`.
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

# Query parameters of the URL that eventsourcing can honour; anything else (sslmode, ...)
# would be silently dropped by its connection pool, so it is refused instead.
_SUPPORTED_QUERY = frozenset(
    {"options", "search_path", "schema", "currentSchema", "connect_timeout", "host", "port"}
)
_SEARCH_PATH_OPTION = "-csearch_path="


def eventsourcing_env(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, create_table: bool = True
) -> dict[str, str]:
    """Environment for an eventsourcing Application storing events in the database at `url`.

    The schema is the first entry of `?options=-csearch_path%3Dname` or `?search_path=name`
    (both forms asyncpg honours too, so one URL serves both drivers), or `?schema=name`
    (eventsourcing only). It must already exist: eventsourcing creates tables, not schemas.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.partition("+")[0]  # tolerate SQLAlchemy-style postgresql+psycopg
    if scheme not in ("postgresql", "postgres"):
        msg = f"not a PostgreSQL URL (scheme {parts.scheme!r}); expected postgresql://"
        raise ValueError(msg)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unsupported = sorted(set(query) - _SUPPORTED_QUERY)
    if unsupported:
        msg = f"eventsourcing cannot apply URL parameter(s) {', '.join(unsupported)}"
        raise ValueError(msg)
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        msg = "the database URL names no database (postgresql://host:port/DBNAME)"
        raise ValueError(msg)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "APPLICATION_RECORDER_TOPIC": "infra.eventstore.event_recorder:ArrayInsertRecorder",
        "POSTGRES_HOST": query.get("host") or parts.hostname or "localhost",
        "POSTGRES_PORT": query.get("port") or str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_CONNECT_TIMEOUT": query.get("connect_timeout", "10"),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        # A session stuck in a transaction (a hung worker) is cut after 5 s, freeing its
        # lock on the events table; lock waits stay unbounded (eventsourcing's default).
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "5",
        "CREATE_TABLE": "y" if create_table else "n",
    }
    schema = _schema(query)
    if schema:
        env["POSTGRES_SCHEMA"] = schema
    return env


def _schema(query: dict[str, str]) -> str | None:
    for key in ("schema", "currentSchema", "search_path"):
        if query.get(key):
            return query[key].split(",")[0].strip() or None
    for option in query.get("options", "").split():
        if option.startswith(_SEARCH_PATH_OPTION):
            return option.removeprefix(_SEARCH_PATH_OPTION).split(",")[0].strip() or None
        msg = f"only -csearch_path=... is supported in the URL options, got {option!r}"
        raise ValueError(msg)
    return None
