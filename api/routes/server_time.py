"""GET /time: the server clock, the one endpoint without authentication (spec §2)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api import schemas

router = APIRouter(tags=["reads"])


@router.get("/time", response_model=schemas.ServerTime, summary="Server time (no signature needed)")
async def server_time() -> schemas.ServerTime:
    now = datetime.now(UTC)
    return schemas.ServerTime(
        epoch=int(now.timestamp()), iso=now.isoformat().replace("+00:00", "Z")
    )
