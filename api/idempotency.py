"""`X-REQUEST-ID` (spec §7.1, §11.17): required on every mutation, a UUID v4, echoed back.

What it means is decided on the write side (`domain.request_key`): an id belongs to one request
of one platform, whatever its kind; the same request again is a replay (200 with the resource
as it is now), another request with the same id a 409 `idempotency_conflict`. Keys are kept as
long as the events they were saved with, so for as long as the resources they made.
"""

from __future__ import annotations

import re
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Header, Response

from api.errors import ProblemError
from domain.errors import FieldError

REQUEST_ID_HEADER = "X-REQUEST-ID"
# Canonical text form only: version nibble 4, RFC 4122 variant (8, 9, a or b).
_UUID_V4 = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE
)


def parse_request_id(value: str | None) -> UUID:
    if value is None or not _UUID_V4.fullmatch(value.strip()):
        raise ProblemError(
            400,
            "invalid_request_id",
            f"{REQUEST_ID_HEADER} is required on every mutation and must be a UUID v4.",
            errors=[FieldError(REQUEST_ID_HEADER, "Must be a UUID v4")],
        )
    return UUID(value.strip())


async def request_id_header(
    response: Response,
    value: Annotated[
        str | None,
        Header(
            alias=REQUEST_ID_HEADER,
            description="UUID v4 chosen by the client; resend it only to retry the same call.",
        ),
    ] = None,
) -> UUID:
    """FastAPI dependency for mutations: the validated `X-REQUEST-ID`, echoed back."""
    request_id = parse_request_id(value)
    response.headers[REQUEST_ID_HEADER] = str(request_id)
    return request_id


RequestIdDep = Annotated[UUID, Depends(request_id_header)]
