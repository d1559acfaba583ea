"""Sealed secrets: AES-256-GCM under a named key, bound to their row; the previous release's
format still opens; a box that holds several keys opens with each and seals with one."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from infra.postgres.master_key import (
    KeyFiles,
    generate_master_key,
    key_id,
    load_master_keys,
    read_key_file,
    write_key_file,
)
from infra.postgres.secrets_box import SecretBox, SecretBoxError, secret_box_for
from infra.settings import Settings

if TYPE_CHECKING:
    from pathlib import Path

OLD, NEW = b"m" * 32, b"n" * 32
# Sealed by the release before AES-GCM (format 1), under OLD, for the row `AK1`.
RELEASE_1_VALUE = bytes.fromhex(
    "017b5cad26d5e0b729f110f15cab97e14d099e1cef09fa9a731164f137f169f00682f457b0ef9c7bf1"
    "02c8fdcc6998dfbd0d4d847a0366c6479ef16216858933977e1293f2844b15053968ace8"
)
RELEASE_1_AAD = b"platform_api_keys:AK1"
# What that release derived from OLD for the event cursors: cursors must survive the upgrade.
RELEASE_1_CURSOR_KEY = "9bc611292cf8f587d0a1a9cde94461ab507cea9a091d467acd30a926d8699c8e"


def test_a_value_sealed_by_the_previous_release_still_opens() -> None:
    opened = SecretBox(OLD).open(RELEASE_1_VALUE, aad=RELEASE_1_AAD)
    assert opened == b"a secret sealed by release 1"
    assert SecretBox(NEW, [OLD]).open(RELEASE_1_VALUE, aad=RELEASE_1_AAD).startswith(b"a secret")
    for box, aad in ((SecretBox(NEW), RELEASE_1_AAD), (SecretBox(OLD), b"platform_api_keys:AK2")):
        with pytest.raises(SecretBoxError):
            box.open(RELEASE_1_VALUE, aad=aad)


def test_the_derived_keys_of_other_jobs_do_not_change_with_the_format() -> None:
    assert SecretBox(OLD).subkey(b"portfolio-strategies/events-cursor/v1").hex() == (
        RELEASE_1_CURSOR_KEY
    )
    both = SecretBox(NEW, [OLD]).subkeys(b"portfolio-strategies/events-cursor/v1")
    assert [key.hex() for key in both][1] == RELEASE_1_CURSOR_KEY
    assert both[0] == SecretBox(NEW).subkey(b"portfolio-strategies/events-cursor/v1")


def test_a_sealed_value_names_its_key_and_opens_only_on_its_row() -> None:
    box = SecretBox(OLD)
    sealed = box.seal(b"secret", aad=b"row-1")
    assert sealed[:1] == b"\x02" and sealed[1:9] == key_id(OLD)
    assert len(sealed) == 1 + 8 + 12 + len(b"secret") + 16
    assert box.open(sealed, aad=b"row-1") == b"secret"
    assert box.seal(b"secret", aad=b"row-1") != sealed  # a fresh nonce each time
    assert box.is_current(sealed) and not SecretBox(NEW, [OLD]).is_current(sealed)
    other_key_named = sealed[:1] + key_id(NEW) + sealed[9:]
    flipped = bytearray(sealed)
    flipped[-1] ^= 1
    for bad, aad in (
        (sealed, b"row-2"),  # moved to another row
        (bytes(flipped), b"row-1"),
        (other_key_named, b"row-1"),  # the header is authenticated too
        (sealed[:20], b"row-1"),
        (b"\x03" + sealed[1:], b"row-1"),
    ):
        with pytest.raises(SecretBoxError):
            SecretBox(NEW, [OLD]).open(bad, aad=aad)
    with pytest.raises(SecretBoxError, match=key_id(OLD).hex()):
        SecretBox(NEW).open(sealed, aad=b"row-1")


def test_a_box_seals_with_its_first_key_and_opens_with_any() -> None:
    old_sealed = SecretBox(OLD).seal(b"old", aad=b"r")
    box = SecretBox(NEW, [OLD, OLD])
    assert box.open(old_sealed, aad=b"r") == b"old"
    assert SecretBox(NEW).open(box.seal(b"new", aad=b"r"), aad=b"r") == b"new"
    assert box.key_id == key_id(NEW).hex()
    assert "n" * 8 not in repr(box) and "m" * 8 not in repr(box)


def test_key_files_are_private_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"
    write_key_file(path, OLD)
    write_key_file(path, NEW)
    assert read_key_file(path) == NEW
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["master.key"]  # no temporary left behind


def test_embedded_mode_opens_with_a_rotations_next_and_previous_keys(tmp_path: Path) -> None:
    files = KeyFiles.of(tmp_path)
    write_key_file(files.current, OLD)
    write_key_file(files.next, NEW)
    write_key_file(files.previous, b"p" * 32)
    keys = load_master_keys(None, None, tmp_path, embedded=True)
    assert keys.current == OLD and set(keys.others) == {NEW, b"p" * 32}
    assert keys.file == files.current
    box = secret_box_for(Settings(data_dir=tmp_path))
    for key in (OLD, NEW, b"p" * 32):
        assert box.open(SecretBox(key).seal(b"s", aad=b"r"), aad=b"r") == b"s"


def test_previous_keys_may_be_given_in_the_environment(tmp_path: Path) -> None:
    current, previous = generate_master_key(), generate_master_key()
    settings = Settings.model_validate(
        {
            "STRATEGIES_MASTER_KEY": current,
            "STRATEGIES_MASTER_KEY_PREVIOUS": f" {previous}, ",
            "data_dir": tmp_path,
        }
    )
    keys = load_master_keys(current, f" {previous}, ", tmp_path, embedded=False)
    box = secret_box_for(settings)
    assert box.open(SecretBox(keys.others[0]).seal(b"s"), aad=b"") == b"s"
    assert not list(tmp_path.iterdir())  # a configured key writes no file
