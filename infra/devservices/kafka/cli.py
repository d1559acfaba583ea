"""`strategies kafka ...`: run the local broker that tests and development use.

The broker keeps running after `start` returns (it lives in its own session), so one broker
can serve many test runs: export the printed address as KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from infra.devservices.kafka.launcher import KafkaLauncherError, LocalKafka
from infra.settings import Settings

app = typer.Typer(
    help="Run a local Apache Kafka broker (KRaft, from Maven Central jars; no Docker needed).",
    no_args_is_help=True,
)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Folder for the broker's data, log and state "
        "(default: $STRATEGIES_DATA_DIR/kafka, else the per-user data folder).",
        file_okay=False,
    ),
]


@app.command()
def start(
    ctx: typer.Context,
    home: HomeOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker to answer.")] = 90,
) -> None:
    """Start the broker (or find the one already running) and print its address.

    The first start downloads the Kafka jars with Maven (cached per user, once per version);
    later starts take a few seconds.
    """
    kafka = LocalKafka(home=_home(ctx, home))
    try:
        bootstrap = kafka.start(timeout=timeout)
    except KafkaLauncherError as exc:
        _fail(exc)
    # Address alone on stdout so `$(strategies kafka start)` captures it; the hint is for people.
    typer.echo(bootstrap)
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={bootstrap}", err=True)


@app.command()
def stop(
    ctx: typer.Context,
    home: HomeOption = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to allow a clean shutdown before SIGKILL.")
    ] = 30,
) -> None:
    """Stop the broker running in the home folder; its data is kept for the next start."""
    kafka = LocalKafka(home=_home(ctx, home))
    try:
        stopped = kafka.stop(timeout=timeout)
    except KafkaLauncherError as exc:
        _fail(exc)
    typer.echo("stopped" if stopped else f"no broker was running in {kafka.home}")


@app.command()
def status(ctx: typer.Context, home: HomeOption = None) -> None:
    """Show whether the broker runs; exit code 0 when it does, 1 when it does not (for scripts)."""
    kafka = LocalKafka(home=_home(ctx, home))
    current = kafka.status()
    if not current.running:
        typer.echo(f"not running (home {kafka.home})")
        raise typer.Exit(code=1)
    typer.echo(f"running: pid {current.pid}, bootstrap {current.bootstrap}")
    typer.echo(f"log: {current.log_path}")


def _home(ctx: typer.Context, home: Path | None) -> Path | None:
    """--home; else the data folder of the settings (which a `.env` file may set) when run
    under `strategies`; else the launcher's default."""
    settings = ctx.find_root().obj
    if home is None and isinstance(settings, Settings):
        return settings.data_dir / "kafka"
    return home


def _fail(exc: KafkaLauncherError) -> NoReturn:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code=1)
