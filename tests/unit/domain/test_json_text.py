from __future__ import annotations

import pytest

from domain.json_text import (
    DuplicateKeyError,
    JsonEncodingError,
    JsonTextError,
    parse_json_text,
)

TEXT = '{"quoted_currency": "USD", "metadata": {"é": [1, 2.5, null, true]}}'


def test_utf8_json_reads_as_python_json_would() -> None:
    assert parse_json_text(TEXT.encode()) == {
        "quoted_currency": "USD",
        "metadata": {"é": [1, 2.5, None, True]},
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"\xef\xbb\xbf" + TEXT.encode(),
        TEXT.encode("utf-16"),
        TEXT.encode("utf-16-le"),
        TEXT.encode("utf-16-be"),
        TEXT.encode("utf-32"),
        TEXT.encode("utf-32-le"),
        b'{"a": "\xff"}',
        TEXT.encode("latin-1"),
    ],
)
def test_anything_but_utf8_without_a_byte_order_mark_is_refused(raw: bytes) -> None:
    with pytest.raises(JsonEncodingError) as caught:
        parse_json_text(raw)
    assert caught.value.code == "unsupported_encoding"


@pytest.mark.parametrize(
    "raw", [b'{"a": 1, "a": 1}', b'{"x": [{"b": 1, "c": 2, "b": 3}]}', b'{"": 0, "": 0}']
)
def test_a_repeated_member_is_refused_wherever_it_is(raw: bytes) -> None:
    with pytest.raises(DuplicateKeyError) as caught:
        parse_json_text(raw)
    assert caught.value.code == "duplicate_key"


def test_a_repeated_long_name_is_quoted_only_in_part() -> None:
    name = "n" * 100_000
    with pytest.raises(DuplicateKeyError) as caught:
        parse_json_text(f'{{"{name}": 1, "{name}": 2}}'.encode())
    assert len(caught.value.errors[0].message) < 100


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'{"a": NaN}',
        b"[Infinity]",
        b"-Infinity",
        b"[" * 200_000,
        b"",
        # Python's int() refuses over 4300 digits with a bare ValueError (the command topic's
        # fuzzer found it: the record was dead-lettered `handler_failed`, over HTTP a 500).
        b'{"n": ' + b"9" * 5000 + b"}",
        # An escaped lone surrogate decodes into a str no UTF-8 can hold (the fuzzer's record
        # failed five times in the handler, then was dead-lettered handler_failed).
        b'{"k": "\\ud800"}',
        b'{"\\udfff": 1}',
        b'[["x", {"a": "ok \\uDBFF"}]]',
    ],
)
def test_other_faults_are_invalid_json(raw: bytes) -> None:
    with pytest.raises(JsonTextError) as caught:
        parse_json_text(raw)
    assert caught.value.code == "invalid_json"


def test_an_escaped_surrogate_pair_is_one_character_and_reads() -> None:
    assert parse_json_text(b'{"k": "\\ud83d\\ude00"}') == {"k": "\U0001f600"}
