"""`strategies master-key ...`: make a master key, and rotate the one in use.

`rotate` never leaves a secret that no key opens, whatever moment it stops at (README,
"Secrets and the master key"):

1. the new key is stored first: `master.key.next` in the data folder (embedded mode), or the
   operator's `--new-key-file` (a key given in the environment);
2. every sealed secret is re-sealed under it in one database transaction;
3. embedded mode only: the old key becomes `master.key.previous`, the new one `master.key`,
   and `master.key.next` goes.

Between 1 and 3 every process opens with both keys (each sealed value names its key), and a
run after a crash finishes with the key of step 1.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Annotated, NoReturn

import asyncpg
import typer

from infra.cli.database import database_problem, ready_database
from infra.devservices.embedded_postgres import EmbeddedPostgresError
from infra.postgres.master_key import (
    MASTER_KEY_BYTES,
    MASTER_KEY_VARIABLE,
    PREVIOUS_KEYS_VARIABLE,
    KeyFiles,
    MasterKeyError,
    MasterKeys,
    generate_master_key,
    key_id,
    read_key_file,
    write_key_file,
)
from infra.postgres.secrets_box import SecretBox, master_keys_for, secret_box_for
from infra.postgres.secrets_rotation import RotationError, reseal_all
from infra.settings import Settings

app = typer.Typer(
    help="The master key that seals the platforms' and the webhooks' secrets.",
    no_args_is_help=True,
)


@app.command()
def generate() -> None:
    """Print a new master key (base64 of 32 random bytes), e.g. for STRATEGIES_MASTER_KEY in a
    `.env` file: `echo STRATEGIES_MASTER_KEY=$(strategies master-key generate) >> .env`."""
    typer.echo(generate_master_key())


@app.command()
def rotate(
    ctx: typer.Context,
    new_key_file: Annotated[
        Path | None,
        typer.Option(
            help="A file holding the new key (from `strategies master-key generate`); "
            "required when STRATEGIES_MASTER_KEY is set, else one is generated.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Re-seal every secret under a new master key, in one transaction; safe to run again
    after any failure. Stop `serve` and the webhooks workers first, or restart them after:
    until then they hold only the old key."""
    settings: Settings = ctx.find_root().obj
    try:
        keys = master_keys_for(settings)
        new = _new_key(keys, new_key_file)
    except MasterKeyError as exc:
        _fail(str(exc), code=2)
    box = SecretBox(new, (keys.current, *keys.others))
    try:
        with ready_database(settings) as url:
            counts = asyncio.run(_reseal(url, box))
    except RotationError as exc:
        _fail(str(exc))
    except (EmbeddedPostgresError, OSError, asyncpg.PostgresError) as exc:
        _fail(f"{database_problem(exc)}; nothing was changed")
    summary = ", ".join(f"{count} {label}" for label, count in counts.items())
    if keys.file is None:
        typer.echo(
            f"re-sealed {summary} under key {box.key_id}; now set {MASTER_KEY_VARIABLE} to the "
            f"key in {new_key_file} and {PREVIOUS_KEYS_VARIABLE} to the old one in every "
            f"process, restart them, and drop {PREVIOUS_KEYS_VARIABLE} once none runs with "
            "the old key"
        )
        return
    try:
        files = _install(keys, new)
    except MasterKeyError as exc:
        _fail(f"{exc}; the secrets are re-sealed: run `strategies master-key rotate` again")
    typer.echo(
        f"re-sealed {summary} under key {box.key_id}, now in {files.current}; the old key "
        f"{key_id(keys.current).hex()} stays in {files.previous} until you remove it "
        "(back up the new key first)"
    )


def require_secret_box(settings: Settings) -> SecretBox:
    """The deployment's box, or one line naming what is missing and exit 2 (a command that
    needs the key is misconfigured without it, like a bad variable)."""
    try:
        return secret_box_for(settings)
    except MasterKeyError as exc:
        _fail(str(exc), code=2)


def _new_key(keys: MasterKeys, new_key_file: Path | None) -> bytes:
    """The key to re-seal under, stored before any row is (step 1 of the module docstring)."""
    if keys.file is None:
        if new_key_file is None:
            raise MasterKeyError(
                f"{MASTER_KEY_VARIABLE} comes from the environment, which this command cannot "
                "change: make the new key with `strategies master-key generate > new.key`, "
                "then run `strategies master-key rotate --new-key-file new.key`"
            )
        return read_key_file(new_key_file)
    files = KeyFiles.of(keys.file.parent)
    pending = read_key_file(files.next) if files.next.exists() else None
    if new_key_file is None:
        new = pending or secrets.token_bytes(MASTER_KEY_BYTES)
    else:
        new = read_key_file(new_key_file)
        if pending is not None and pending != new:
            raise MasterKeyError(
                f"an earlier rotation to the key in {files.next} did not finish: run "
                "`strategies master-key rotate` without --new-key-file to finish it first"
            )
    if pending is None:
        write_key_file(files.next, new)
    return new


def _install(keys: MasterKeys, new: bytes) -> KeyFiles:
    """Step 3: each write is atomic, and a crash between two leaves keys that still open
    everything (the next run resumes from `master.key.next`)."""
    assert keys.file is not None
    files = KeyFiles.of(keys.file.parent)
    if keys.current != new:
        write_key_file(files.previous, keys.current)
        write_key_file(files.current, new)
    files.next.unlink(missing_ok=True)
    return files


async def _reseal(url: str, box: SecretBox) -> dict[str, int]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1, timeout=10)
    try:
        return await reseal_all(pool, box)
    finally:
        await pool.close()


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)
