"""Secrets at rest: the platforms' HMAC secrets and the webhook subscriptions' signing
secrets are sealed (AES-256-GCM), their passphrases are hashed with scrypt.

The API must know each platform's signing secret in clear (HMAC needs the key itself), so the
secret cannot be hashed like the passphrase; it is sealed under the master key
(`infra.postgres.master_key`) instead, and a copy of the tables (a backup, a dump, a replica)
is useless without that key.

Sealed layout, version 2 (every value written since AES-GCM came in):

    0x02 || key_id (8) || nonce (12) || AES-256-GCM ciphertext and tag (16)

- the AES key is derived from the master key (HMAC-SHA256 with its own label), never the
  master key itself, which also derives other keys (`subkey`);
- `key_id` names the master key that sealed the value (`master_key.key_id`), so opening picks
  the right one of the keys it holds (the current one, the previous one, a rotation's next);
- the associated data is the header (version and key id) followed by the caller's `aad`,
  which names the row (its table and primary key): authenticated, not stored, so a sealed
  value copied onto another row, or a header edited to name another key, does not open.

Version 1, written before, was our own construction from the standard library (HMAC-SHA256
in counter mode, encrypt-then-MAC: `0x01 || nonce (16) || ciphertext || tag (32)`); it still
opens, with any key held, and `strategies master-key rotate` re-seals it as version 2.

A wrong key and a tampered value look the same (`SecretBoxError`): nothing is ever returned
from a value that fails authentication.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from infra.postgres.master_key import (
    MASTER_KEY_BYTES,
    MasterKeyError,
    MasterKeys,
    key_id,
    load_master_keys,
)

if TYPE_CHECKING:
    from infra.settings import Settings

_V1, _V2 = b"\x01", b"\x02"
_V2_NONCE_BYTES = 12
_V2_HEADER_BYTES = 1 + 8
_GCM_TAG_BYTES = 16
_V1_NONCE_BYTES = 16
_V1_TAG_BYTES = 32
_V1_BLOCK_BYTES = 32  # one HMAC-SHA256 output of keystream per counter value
_AES_LABEL = b"portfolio-strategies/secret-box/v2/aes-256-gcm"
_V1_ENC_LABEL = b"portfolio-strategies/secret-box/v1/encryption"
_V1_MAC_LABEL = b"portfolio-strategies/secret-box/v1/authentication"
# Shared by both versions: the keys derived for other jobs (the event cursors') must not
# change when the sealing does, or every cursor given out would stop opening.
_DERIVE_LABEL = b"portfolio-strategies/secret-box/v1/derivation"


class SecretBoxError(Exception):
    """Raised when a sealed value does not open (no key held sealed it, or tampered bytes)."""


class _Key:
    """One master key's derived keys."""

    __slots__ = ("aes", "derive", "id", "v1_enc", "v1_mac")

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise MasterKeyError(f"the master key must be {MASTER_KEY_BYTES} bytes")
        self.id = key_id(master_key)
        self.aes = AESGCM(hmac.digest(master_key, _AES_LABEL, hashlib.sha256))
        self.derive = hmac.digest(master_key, _DERIVE_LABEL, hashlib.sha256)
        self.v1_enc = hmac.digest(master_key, _V1_ENC_LABEL, hashlib.sha256)
        self.v1_mac = hmac.digest(master_key, _V1_MAC_LABEL, hashlib.sha256)


class SecretBox:
    """Seals under one master key, opens with it or with `others` (see the module docstring)."""

    __slots__ = ("_keys",)

    def __init__(self, master_key: bytes, others: Sequence[bytes] = ()) -> None:
        keys = [_Key(master_key)]
        for other in others:
            candidate = _Key(other)
            if all(candidate.id != known.id for known in keys):
                keys.append(candidate)
        self._keys = tuple(keys)

    def __repr__(self) -> str:
        return f"SecretBox(<{len(self._keys)} master key(s) hidden>, sealing {self.key_id})"

    @property
    def key_id(self) -> str:
        """The sealing key's id, in hex (what `strategies master-key rotate` prints)."""
        return self._keys[0].id.hex()

    def subkey(self, purpose: bytes) -> bytes:
        """A 32-byte key for another job (`purpose` names it), independent of the sealing
        keys and of every other purpose's key."""
        return self.subkeys(purpose)[0]

    def subkeys(self, purpose: bytes) -> tuple[bytes, ...]:
        """`subkey` under every key held, the current one first: what the current key made
        is made from now on, what an earlier key made still checks."""
        return tuple(hmac.digest(key.derive, purpose, hashlib.sha256) for key in self._keys)

    def seal(self, plaintext: bytes, *, aad: bytes = b"") -> bytes:
        key = self._keys[0]
        header = _V2 + key.id
        nonce = secrets.token_bytes(_V2_NONCE_BYTES)
        return header + nonce + key.aes.encrypt(nonce, plaintext, header + aad)

    def open(self, sealed: bytes, *, aad: bytes = b"") -> bytes:
        version = sealed[:1]
        if version == _V2 and len(sealed) >= _V2_HEADER_BYTES + _V2_NONCE_BYTES + _GCM_TAG_BYTES:
            return self._open_v2(sealed, aad)
        if version == _V1 and len(sealed) >= 1 + _V1_NONCE_BYTES + _V1_TAG_BYTES:
            for key in self._keys:
                opened = _open_v1(key, sealed, aad)
                if opened is not None:
                    return opened
            raise SecretBoxError("the sealed value does not open: no key held, or tampered")
        raise SecretBoxError("not a sealed value of a known version")

    def is_current(self, sealed: bytes) -> bool:
        """Whether `sealed` is in today's format under the sealing key (nothing to re-seal)."""
        return sealed[:_V2_HEADER_BYTES] == _V2 + self._keys[0].id

    def _open_v2(self, sealed: bytes, aad: bytes) -> bytes:
        header = sealed[:_V2_HEADER_BYTES]
        nonce = sealed[_V2_HEADER_BYTES : _V2_HEADER_BYTES + _V2_NONCE_BYTES]
        for key in self._keys:
            if key.id == header[1:]:
                try:
                    return key.aes.decrypt(
                        nonce, sealed[_V2_HEADER_BYTES + _V2_NONCE_BYTES :], header + aad
                    )
                except InvalidTag:
                    break
        raise SecretBoxError(
            f"the sealed value does not open: sealed by key {header[1:].hex()}, which is "
            "not held, or tampered"
        )


def _open_v1(key: _Key, sealed: bytes, aad: bytes) -> bytes | None:
    """The previous release's format, still read; None when `key` did not seal it."""
    nonce = sealed[1 : 1 + _V1_NONCE_BYTES]
    ciphertext = sealed[1 + _V1_NONCE_BYTES : -_V1_TAG_BYTES]
    message = _V1 + nonce + len(aad).to_bytes(4, "big") + aad + ciphertext
    expected = hmac.digest(key.v1_mac, message, hashlib.sha256)
    if not hmac.compare_digest(sealed[-_V1_TAG_BYTES:], expected):
        return None
    blocks = (len(ciphertext) + _V1_BLOCK_BYTES - 1) // _V1_BLOCK_BYTES
    stream = b"".join(
        hmac.digest(key.v1_enc, nonce + counter.to_bytes(8, "big"), hashlib.sha256)
        for counter in range(blocks)
    )[: len(ciphertext)]
    plain = int.from_bytes(ciphertext, "big") ^ int.from_bytes(stream, "big")
    return plain.to_bytes(len(ciphertext), "big")


def secret_box_for(settings: Settings) -> SecretBox:
    """The box of this deployment (`master_keys_for`)."""
    keys = master_keys_for(settings)
    return SecretBox(keys.current, keys.others)


def master_keys_for(settings: Settings) -> MasterKeys:
    """`STRATEGIES_MASTER_KEY` (or embedded mode's key file) seals;
    `STRATEGIES_MASTER_KEY_PREVIOUS` and a rotation's key files may also open."""
    return load_master_keys(
        _revealed(settings.master_key),
        _revealed(settings.master_key_previous),
        settings.data_dir,
        embedded=settings.postgres.embedded,
    )


def _revealed(value: SecretStr | str | None) -> str | None:
    # SecretStr in Settings; `model_copy(update=...)` may hand a plain string
    return value.get_secret_value() if isinstance(value, SecretStr) else value


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
