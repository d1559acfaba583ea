"""Command-line output: tables a person can read whole, and the same rows as JSON.

Every list command prints an aligned table with a header row and every value whole (an id
or a reason name cut to `instrument_ineli…` is useless to an operator), or with `--json` the
rows as one JSON document for scripts. Rich tables (demo, bench) keep every word whole too:
they wrap between words when the terminal is narrow and never inside one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

#: The `--json` option of every list command.
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the rows as JSON (for scripts) instead of a table.")
]

_GAP = "  "
_UNBOUNDED = 10_000


def echo_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


def echo_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    right: frozenset[str] = frozenset(),
) -> None:
    """`columns`: (row key, header) in display order; `right`: the keys aligned right
    (numbers). The last column is not padded, so lines carry no trailing blanks."""
    cells = [[_text(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max(len(line[i]) for line in [headers, *cells]) for i in range(len(columns))]
    for line in [headers, *cells]:
        parts = [
            value.rjust(width) if key in right else value.ljust(width)
            for (key, _), value, width in zip(columns, line, widths, strict=True)
        ]
        typer.echo(_GAP.join(parts).rstrip())


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "-"
    return str(value)


def print_whole(console: Console, table: Table) -> None:
    """Print a rich table at its natural width, so that no cell is cut: rich fits a table to
    the console by shortening cells (`instrument_ineli…`). When the console is narrower, a
    terminal wraps the long lines; a file or a pipe gets them whole."""
    natural = Measurement.get(console, console.options.update(max_width=_UNBOUNDED), table)
    saved = console.width
    console.width = max(saved, natural.maximum)
    try:
        console.print(table)
    finally:
        console.width = saved
