"""The master key that seals the platforms' secrets: where it comes from and the files that
keep it.

`STRATEGIES_MASTER_KEY` (base64 of 32 bytes) wins. Without it, in embedded mode only (no
DATABASE_URL), the key is `<STRATEGIES_DATA_DIR>/master.key`, generated on first use (mode
0600); with an external database the key must be configured, because a key generated on one
host could not open what another host sealed.

Only the current key seals; other keys may open, so that a rotation
(`strategies master-key rotate`) never strands a secret whatever moment it stops at:

- `master.key.next`: the new key, written durably *before* the database is re-sealed under
  it, so a crash after the commit cannot lose the only key that opens the rows;
- `master.key.previous`: the key before the last rotation, kept until the operator removes it;
- `STRATEGIES_MASTER_KEY_PREVIOUS`: the same for keys given in the environment (comma-separated).

Each sealed value names the key that sealed it (`key_id`), so opening never guesses.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

MASTER_KEY_BYTES = 32
MASTER_KEY_FILE = "master.key"
MASTER_KEY_VARIABLE = "STRATEGIES_MASTER_KEY"
PREVIOUS_KEYS_VARIABLE = "STRATEGIES_MASTER_KEY_PREVIOUS"
GENERATE_HINT = "make one with `strategies master-key generate`"
KEY_ID_BYTES = 8
_KEY_ID_LABEL = b"portfolio-strategies/master-key-id\0"


class MasterKeyError(Exception):
    """Raised when the master key is missing, malformed or cannot be read or written."""


@dataclass(frozen=True)
class KeyFiles:
    """The key files of one data folder."""

    current: Path
    next: Path
    previous: Path

    @classmethod
    def of(cls, data_dir: Path) -> KeyFiles:
        current = data_dir / MASTER_KEY_FILE
        return cls(
            current=current,
            next=current.with_name(MASTER_KEY_FILE + ".next"),
            previous=current.with_name(MASTER_KEY_FILE + ".previous"),
        )


@dataclass(frozen=True)
class MasterKeys:
    """The key that seals, and the others that may still open (never seal)."""

    current: bytes
    others: tuple[bytes, ...] = ()
    #: Where the current key came from: a file (embedded mode) or the environment (None).
    file: Path | None = None


def key_id(key: bytes) -> bytes:
    """Names a key in every value it seals. A one-way hash, so a sealed value tells which key
    to use without telling anything about the key."""
    return hashlib.sha256(_KEY_ID_LABEL + key).digest()[:KEY_ID_BYTES]


def generate_master_key() -> str:
    """A new master key, base64-encoded as `STRATEGIES_MASTER_KEY` expects it."""
    return base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii")


def decode_master_key(encoded: str, source: str = MASTER_KEY_VARIABLE) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{source} is not valid base64 ({GENERATE_HINT})") from None
    if len(key) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            f"{source} must be the base64 of {MASTER_KEY_BYTES} bytes ({GENERATE_HINT})"
        )
    return key


def load_master_key(configured: str | None, data_dir: Path, *, embedded: bool) -> bytes:
    """The configured key; else, in embedded mode only, the one kept in the data folder."""
    return load_master_keys(configured, None, data_dir, embedded=embedded).current


def load_master_keys(
    configured: str | None, previous: str | None, data_dir: Path, *, embedded: bool
) -> MasterKeys:
    """Every key this process may open with, the sealing one first."""
    others = [
        decode_master_key(part, PREVIOUS_KEYS_VARIABLE)
        for part in (previous or "").split(",")
        if part.strip()
    ]
    if configured:
        return MasterKeys(decode_master_key(configured), tuple(others))
    if not embedded:
        raise MasterKeyError(
            f"{MASTER_KEY_VARIABLE} must be set when DATABASE_URL is, the same in every "
            f"process that shares the database: {GENERATE_HINT} and keep a copy (README, "
            "'Secrets and the master key')"
        )
    files = KeyFiles.of(data_dir)
    if not files.current.exists():
        _create_key_file(files.current)
    current = read_key_file(files.current)
    others += [read_key_file(path) for path in (files.next, files.previous) if path.exists()]
    return MasterKeys(current, tuple(others), file=files.current)


def read_key_file(path: Path) -> bytes:
    try:
        encoded = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc}") from None
    return decode_master_key(encoded, f"the master key file {path}")


def write_key_file(path: Path, key: bytes) -> None:
    """Replace `path` by a file holding `key`, atomically and durably: a reader, or a process
    that restarts after a crash, sees the old file or the new one, never a part of either."""
    _install(path, key, replace=True)


def _create_key_file(path: Path) -> None:
    """Like `write_key_file`, but never over an existing key: `os.link` fails if the name
    exists, so two processes starting together cannot each install a different key."""
    _install(path, secrets.token_bytes(MASTER_KEY_BYTES), replace=False)


def _install(path: Path, key: bytes, *, replace: bool) -> None:
    temporary = _complete_temporary(path, key)
    try:
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):  # another process's key won: use it
                os.link(temporary, path)
        _sync_folder(path.parent)
    except OSError as exc:
        raise MasterKeyError(f"cannot install the master key file {path}: {exc}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _complete_temporary(path: Path, key: bytes) -> Path:
    """A fully written and synced 0600 file next to `path`, under a name nobody else uses."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(base64.b64encode(key).decode("ascii") + "\n")
            file.flush()
            os.fsync(file.fileno())
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise MasterKeyError(f"cannot write a master key file next to {path}: {exc}") from None
    return temporary


def _sync_folder(folder: Path) -> None:
    """A rename is durable once the folder holding it is synced."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
