"""Request bodies are UTF-8 JSON text, read one way on every way in (HTTP and the command topic).

Python's `json` is lenient where a platform's own systems may not be, so one body could mean
two things: it reads bytes as UTF-16 or UTF-32 and skips a UTF-8 byte order mark (RFC 8259
§8.1 requires UTF-8 without one), it keeps the last of repeated names in an object (which
value a receiver sees is unspecified, §4), and it accepts `NaN` and `Infinity`, which are not
JSON at all. Each of those is refused here with its own code, and every other fault is an
`invalid_json` with its position.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from domain.errors import FieldError, InvalidRequestError

#: Byte order marks of UTF-8, UTF-32 and UTF-16 (UTF-32 LE starts like UTF-16 LE).
_BOMS = (b"\xef\xbb\xbf", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\xfe\xff", b"\xff\xfe")
#: Names quoted in an error are cut to this many characters (a name may be megabytes long).
NAME_MAX_CHARS = 64


class JsonTextError(InvalidRequestError):
    """Raised when a body is not one well-formed JSON text."""

    code = "invalid_json"


class JsonEncodingError(JsonTextError):
    """Raised when a body is not UTF-8 text, or starts with a byte order mark."""

    code = "unsupported_encoding"


class DuplicateKeyError(JsonTextError):
    """Raised when one JSON object names the same member twice."""

    code = "duplicate_key"


def parse_json_text(raw: bytes) -> Any:
    """The value of `raw`, or one of the errors above (all `InvalidRequestError`s)."""
    text = _utf8(raw)
    try:
        value = json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise _invalid(f"{error.msg} at character {error.pos}") from None
    except RecursionError:
        raise _invalid("nested too deeply to read") from None
    except ValueError:
        # Python refuses integers of more than 4300 digits (a guard against quadratic
        # conversion, CVE-2020-10735) with a plain ValueError: no JSON a platform sends needs one.
        raise _invalid("a number has too many digits") from None
    # Valid UTF-8 holds no surrogate, but an escape ("\\ud800") decodes into one that no
    # UTF-8 text, PostgreSQL column or fingerprint can hold; only then is the value walked.
    if _SURROGATE_ESCAPE.search(text) and holds_unpaired_surrogate(value):
        raise _invalid("a string holds an unpaired surrogate (\\ud800-\\udfff)")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def holds_unpaired_surrogate(value: Any) -> bool:
    """Whether any string of `value` (a key or a value, at any depth) cannot be UTF-8."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _utf8(raw: bytes) -> str:
    # A NUL among the first four bytes can only be UTF-16 or UTF-32 text of JSON (whose first
    # characters are ASCII); json.detect_encoding reads the same signs.
    if raw.startswith(_BOMS) or b"\x00" in raw[:4]:
        raise _encoding("starts with a byte order mark or is UTF-16/UTF-32")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _encoding(f"invalid UTF-8 at byte {error.start}") from None


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _value in pairs:
            if name in seen:
                shown = name if len(name) <= NAME_MAX_CHARS else name[:NAME_MAX_CHARS] + "…"
                raise DuplicateKeyError(
                    "The body names a member twice in one object.",
                    errors=(FieldError("body", f"{json.dumps(shown)} appears twice"),),
                )
            seen.add(name)
    return members


def _no_constant(name: str) -> NoReturn:
    raise _invalid(f"{name} is not a JSON value")


def _invalid(reason: str) -> JsonTextError:
    return JsonTextError("The body is not valid JSON.", errors=(FieldError("body", reason),))


def _encoding(reason: str) -> JsonEncodingError:
    return JsonEncodingError(
        "The body must be UTF-8 JSON text without a byte order mark.",
        errors=(FieldError("body", reason),),
    )
