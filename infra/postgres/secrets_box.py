"""Secrets at rest, from the standard library only: the platforms' HMAC secrets are sealed
(encrypted and authenticated), their passphrases are hashed with scrypt.

The API must know each platform's signing secret in clear (HMAC needs the key itself), so the
secret cannot be hashed like the passphrase; it is sealed under a master key instead, and a
copy of the `platform_api_keys` table (a backup, a dump, a replica) is useless without it.

Construction (documented because it is ours, not a library's; replace it by AES-GCM from
`cryptography` if that package is ever added, keeping the version byte to tell them apart):

- Two sub-keys are derived from the 32-byte master key with HMAC-SHA256 and distinct labels:
  `enc_key` and `mac_key` (never the same key for both jobs).
- A fresh random 16-byte nonce per message. The keystream is
  `HMAC-SHA256(enc_key, nonce || counter_be64)` for counter 0, 1, ... (a PRF in counter
  mode, the same idea as CTR mode with HMAC as the block function); ciphertext =
  plaintext XOR keystream.
- Encrypt-then-MAC: `tag = HMAC-SHA256(mac_key, version || nonce || len(aad)_be32 || aad ||
  ciphertext)`. The associated data (the api key a secret belongs to) is authenticated but
  not stored, so a sealed secret copied onto another key's row does not open.
- Stored layout: `version (1 byte) || nonce (16) || ciphertext || tag (32)`.

Opening checks the tag with `hmac.compare_digest` before decrypting anything; a wrong master
key and a tampered row look the same (`SecretBoxError`) and nothing is ever returned from a
blob that fails the check.

The master key comes from `STRATEGIES_MASTER_KEY` (base64 of 32 bytes). In embedded mode
(no DATABASE_URL) an unset key is generated once into `<STRATEGIES_DATA_DIR>/master.key`
(mode 0600) and reused; with an external database the key must be configured, because a key
generated on one host could not open what another host sealed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.settings import Settings

MASTER_KEY_BYTES = 32
MASTER_KEY_FILE = "master.key"
MASTER_KEY_VARIABLE = "STRATEGIES_MASTER_KEY"

_VERSION = b"\x01"
_NONCE_BYTES = 16
_TAG_BYTES = 32
_BLOCK_BYTES = 32  # one HMAC-SHA256 output of keystream per counter value
_ENC_LABEL = b"portfolio-strategies/secret-box/v1/encryption"
_MAC_LABEL = b"portfolio-strategies/secret-box/v1/authentication"
_DERIVE_LABEL = b"portfolio-strategies/secret-box/v1/derivation"


class SecretBoxError(Exception):
    """Raised when a sealed value does not open (wrong master key, or tampered bytes)."""


class MasterKeyError(Exception):
    """Raised when the master key is missing, malformed or cannot be read or created."""


class SecretBox:
    """Seals and opens small secrets under one master key (see the module docstring)."""

    __slots__ = ("_derive_key", "_enc_key", "_mac_key")

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise MasterKeyError(f"the master key must be {MASTER_KEY_BYTES} bytes")
        self._enc_key = hmac.digest(master_key, _ENC_LABEL, hashlib.sha256)
        self._mac_key = hmac.digest(master_key, _MAC_LABEL, hashlib.sha256)
        self._derive_key = hmac.digest(master_key, _DERIVE_LABEL, hashlib.sha256)

    def subkey(self, purpose: bytes) -> bytes:
        """A 32-byte key for another job (`purpose` names it), independent of the sealing
        keys and of every other purpose's key."""
        return hmac.digest(self._derive_key, purpose, hashlib.sha256)

    def __repr__(self) -> str:
        return "SecretBox(<master key hidden>)"

    def seal(self, plaintext: bytes, *, aad: bytes = b"") -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        ciphertext = _xor(plaintext, self._keystream(nonce, len(plaintext)))
        return _VERSION + nonce + ciphertext + self._tag(nonce, aad, ciphertext)

    def open(self, sealed: bytes, *, aad: bytes = b"") -> bytes:
        if len(sealed) < 1 + _NONCE_BYTES + _TAG_BYTES or sealed[:1] != _VERSION:
            raise SecretBoxError("not a sealed value of a known version")
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        ciphertext = sealed[1 + _NONCE_BYTES : -_TAG_BYTES]
        tag = sealed[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(nonce, aad, ciphertext)):
            raise SecretBoxError("the sealed value does not open: wrong master key or tampered")
        return _xor(ciphertext, self._keystream(nonce, len(ciphertext)))

    def _keystream(self, nonce: bytes, length: int) -> bytes:
        blocks = (length + _BLOCK_BYTES - 1) // _BLOCK_BYTES
        stream = b"".join(
            hmac.digest(self._enc_key, nonce + counter.to_bytes(8, "big"), hashlib.sha256)
            for counter in range(blocks)
        )
        return stream[:length]

    def _tag(self, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
        message = _VERSION + nonce + len(aad).to_bytes(4, "big") + aad + ciphertext
        return hmac.digest(self._mac_key, message, hashlib.sha256)


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def generate_master_key() -> str:
    """A new master key, base64-encoded as `STRATEGIES_MASTER_KEY` expects it."""
    return base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode("ascii")


def decode_master_key(encoded: str) -> bytes:
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{MASTER_KEY_VARIABLE} is not valid base64") from None
    if len(key) != MASTER_KEY_BYTES:
        raise MasterKeyError(
            f"{MASTER_KEY_VARIABLE} must be the base64 of {MASTER_KEY_BYTES} bytes "
            f"(generate one with: python -c 'import base64,secrets;"
            f"print(base64.b64encode(secrets.token_bytes(32)).decode())')"
        )
    return key


def load_master_key(configured: str | None, data_dir: Path, *, embedded: bool) -> bytes:
    """The configured key; else, in embedded mode only, the one kept in the data folder."""
    if configured:
        return decode_master_key(configured)
    if not embedded:
        raise MasterKeyError(
            f"{MASTER_KEY_VARIABLE} must be set when DATABASE_URL is: every process that "
            "shares the database must seal and open secrets with the same key"
        )
    return _key_file(data_dir / MASTER_KEY_FILE)


def _key_file(path: Path) -> bytes:
    if not path.exists():
        _create_key_file(path)
    try:
        encoded = path.read_text(encoding="ascii")
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc}") from None
    return decode_master_key(encoded)


def _create_key_file(path: Path) -> None:
    """Write a complete key file under a temporary name, then link it into place.

    `os.link` fails if the name exists, so two processes starting together cannot each
    install a different key, and no reader ever sees a half-written file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(generate_master_key() + "\n")
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process's key won: use it
            os.link(temporary, path)
    except OSError as exc:
        raise MasterKeyError(f"cannot create the master key file {path}: {exc}") from None
    finally:
        temporary.unlink(missing_ok=True)


def secret_box_for(settings: Settings) -> SecretBox:
    """The box of this deployment, from `Settings.master_key` (`STRATEGIES_MASTER_KEY`).

    `getattr`: the settings field is added by the composition root; until it exists an unset
    key is assumed, which embedded mode handles with the key file.
    """
    configured = getattr(settings, "master_key", None)
    if configured is not None and not isinstance(configured, str):
        configured = configured.get_secret_value()  # SecretStr
    key = load_master_key(configured, settings.data_dir, embedded=settings.postgres.embedded)
    return SecretBox(key)


# scrypt cost: the passphrase is random (144 bits), so these mostly make a stolen table
# useless for anything but the values it was issued with. A check costs tens of
# milliseconds, which `api/auth.py` pays once per key and passphrase, not per request.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_SALT_BYTES, _SCRYPT_DKLEN = 16, 32


def hash_passphrase(passphrase: str) -> str:
    """`scrypt$N$r$p$salt$hash` (base64 parts), so the cost can change without a migration."""
    salt = secrets.token_bytes(_SCRYPT_SALT_BYTES)
    digest = _scrypt(passphrase, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        (
            "scrypt",
            str(_SCRYPT_N),
            str(_SCRYPT_R),
            str(_SCRYPT_P),
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        )
    )


def verify_passphrase(encoded: str, candidate: str) -> bool:
    """Constant-time comparison of scrypt outputs; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = _scrypt(candidate, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except ValueError:
        return False


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        passphrase.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=_SCRYPT_DKLEN
    )
