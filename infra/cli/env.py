"""`strategies env generate`: the `.env` file compose.yaml reads, with fresh secrets.

What it prints is `.env.example` with its four secrets filled in (a unit test keeps the two
the same), so the generated file documents itself line by line. Written to a file, it is
created with mode 0600 and never replaces an existing one without `--force`; even then the
old file is kept beside it, since it may hold the only copy of a master key in use.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from infra.postgres.master_key import generate_master_key

app = typer.Typer(help="The .env file of the compose deployment.", no_args_is_help=True)

#: The variables the template leaves empty, each with how a fresh value is made. URL-safe
#: values only: the database password goes inside DATABASE_URL unescaped.
SECRETS: dict[str, Callable[[], str]] = {
    "POSTGRES_PASSWORD": lambda: secrets.token_hex(24),
    "STRATEGIES_MASTER_KEY": generate_master_key,
    "STRATEGIES_ADMIN_TOKEN": lambda: secrets.token_urlsafe(32),
    "GRAFANA_ADMIN_PASSWORD": lambda: secrets.token_urlsafe(18),
}

TEMPLATE = """\
# The compose deployment's settings (compose.yaml reads this file; README, "Deploying with
# compose"). Make one with fresh secrets: `strategies env generate --output .env`.
# Keep it out of version control and readable only by you (chmod 600 .env).

# --- Secrets: required; `docker compose` refuses to start while one is empty ---------------

# Password of the `strategies` database user: PostgreSQL is created with it on the first
# start, and every engine service connects with it. Letters and digits only (it goes in a
# URL). Changing it later needs ALTER USER in the database as well.
POSTGRES_PASSWORD=
# Seals the platforms' and the webhook subscriptions' secrets in the database (base64 of 32
# bytes: `strategies master-key generate`). Back it up apart from the database backups:
# without it every sealed secret is lost. Rotate with `strategies master-key rotate`.
STRATEGIES_MASTER_KEY=
# Bearer token of the admin API (/admin/...), /metrics and the operator's /dashboard;
# Prometheus (observability profile) sends it too.
STRATEGIES_ADMIN_TOKEN=
# Grafana's `admin` password (observability profile).
GRAFANA_ADMIN_PASSWORD=

# --- Optional: the defaults shown are what compose uses when a line is absent --------------

# The old master key, comma-separated if several, during a rotation: it still opens secrets,
# never seals. Empty once every process runs with the new key.
#STRATEGIES_MASTER_KEY_PREVIOUS=
# Where the API is published on the host (host:port, or a port for every interface). Put a
# TLS reverse proxy in front of it for anything but a trial.
#STRATEGIES_API_PUBLISH=127.0.0.1:8000
# Host names the API answers (comma-separated, `*.example.com` allowed); others get 400.
# Keep 127.0.0.1 (the health check) and api (Prometheus) in the list.
#STRATEGIES_TRUSTED_HOSTS=*
# Addresses of the reverse proxies whose X-Forwarded-For/-Proto the API believes.
#STRATEGIES_FORWARDED_ALLOW_IPS=
# First part of every topic and consumer group: installations sharing a Kafka cluster
# each need their own.
#STRATEGIES_TOPIC_PREFIX=strategies
# Partitions of each topic the engine creates: the most replicas of one worker service that
# share its work (`docker compose up -d --scale pricing=3`). Existing topics keep theirs.
#STRATEGIES_KAFKA_PARTITIONS=8
# DEBUG, INFO, WARNING, ERROR or CRITICAL.
#STRATEGIES_LOG_LEVEL=INFO
# true lets webhook subscriptions use http:// and private or loopback hosts: for a receiver
# on the same machine or network, never on the internet.
#STRATEGIES_WEBHOOK_ALLOW_PRIVATE=false
"""


def render(values: dict[str, str]) -> str:
    """The template with `values` after the `=` of their (empty) lines."""
    lines = []
    for line in TEMPLATE.splitlines():
        name, equals, rest = line.partition("=")
        if equals and not rest and name in values:
            line = f"{name}={values[name]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def fresh_env() -> str:
    return render({name: make() for name, make in SECRETS.items()})


@app.command()
def generate(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the file here (mode 0600) instead of printing it.",
            dir_okay=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace an existing --output file; the old one is kept as FILE.<time>.bak."
        ),
    ] = False,
) -> None:
    """Print (or write) a complete .env for compose.yaml: a new database password, master
    key, admin token and Grafana password, and every optional setting commented out."""
    content = fresh_env()
    if output is None:
        typer.echo(content, nl=False)
        return
    if not output.parent.is_dir():
        _fail(f"{output.parent} is not a directory")
    if output.exists() and not force:
        _fail(
            f"{output} exists and may hold the master key in use: nothing written "
            "(--force replaces it, keeping the old one beside it)"
        )
    if output.exists():
        kept = output.with_name(f"{output.name}.{datetime.now(UTC):%Y%m%dT%H%M%SZ}.bak")
        output.replace(kept)
        typer.echo(f"kept the previous file as {kept}", err=True)
    # Created with its final mode: the secrets are never readable by others, even briefly.
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(content)
    typer.echo(f"wrote {output}: back up STRATEGIES_MASTER_KEY apart from the database", err=True)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)
