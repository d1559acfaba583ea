"""The codes every way in names things by: platforms, participants, assets, references.

One rule per kind of code, applied by the aggregates and the application service, so the
HTTP API, the admin API, the CLI and the Kafka commands refuse the same input the same way.
Codes end up in PostgreSQL text columns, log lines and account labels: a NUL cannot be stored
at all (an instrument named with one once stalled every read model behind its event), and
control characters or surrounding spaces make codes that look alike but differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from domain.errors import FieldError, InvalidRequestError

MAX_CODE_LENGTH = 64
MAX_ASSET_LENGTH = 16
MAX_REFERENCE_LENGTH = 128
#: Asset codes as venues and ledgers spell them: BTC, ETH, USDC, 1INCH.
_ASSET = re.compile(rf"[A-Z0-9]{{1,{MAX_ASSET_LENGTH}}}")


def code_problem(raw: object, *, max_length: int = MAX_CODE_LENGTH) -> str | None:
    """Why `raw` is not a printable, trimmed, bounded code (None when it is one)."""
    if not isinstance(raw, str) or not raw.strip():
        return "must be a non-empty string"
    if len(raw) > max_length or raw != raw.strip():
        return f"must be at most {max_length} characters without surrounding spaces"
    if not raw.isprintable():
        return "must be printable characters only"
    return None


def asset_problem(raw: object) -> str | None:
    """Why `raw` is not an asset code: 1 to 16 upper-case ASCII letters or digits."""
    if not isinstance(raw, str) or not _ASSET.fullmatch(raw):
        return f"must be 1 to {MAX_ASSET_LENGTH} of A-Z and 0-9"
    return None


def reference_problem(raw: object) -> str | None:
    """Why `raw` is not a deposit reference: a code of at most 128 characters."""
    return code_problem(raw, max_length=MAX_REFERENCE_LENGTH)


def check_platform_id(platform_id: object) -> str:
    return _checked(platform_id, "platform_id", code_problem(platform_id))


def check_participant_code(code: object, field: str = "participant_code") -> str:
    return _checked(code, field, code_problem(code))


def check_asset(asset: object, field: str = "asset") -> str:
    return _checked(asset, field, asset_problem(asset))


def check_assets(assets: Iterable[object], field: str) -> list[str]:
    """Every asset of a list (restricted assets), each named by its index when refused."""
    return [check_asset(asset, f"{field}[{index}]") for index, asset in enumerate(assets)]


def check_reference(reference: object, field: str = "reference") -> str:
    return _checked(reference, field, reference_problem(reference))


def _checked(value: object, field: str, problem: str | None) -> str:
    if problem is not None:
        raise InvalidRequestError(f"{field} {problem}", errors=(FieldError(field, problem),))
    assert isinstance(value, str)
    return value
