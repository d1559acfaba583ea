"""`strategies kafka ...`: the local broker launcher's commands (being written)."""

import typer

app = typer.Typer(help="Run a local Apache Kafka broker (KRaft, from Maven Central jars).")
