"""A signed HTTP client for the API, as a platform would write one (spec §7.2)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from api.auth import sign
from infra.postgres.platforms import Credentials

_SIGNED_MUTATIONS: set[str] = set()


def fresh_signature(secret_b64: str, method: str, path: str, body: bytes | None) -> tuple[int, str]:
    """(timestamp, signature) for a new request, as a careful client makes them: a mutation's
    signature is good for one X-REQUEST-ID, so one identical to a mutation already sent (same
    second, path and body) takes the next timestamp (the server accepts 60 s either side)."""
    now = int(time.time())
    signature = sign(secret_b64, now, method, path, body)
    if method in ("GET", "HEAD"):
        return now, signature
    while signature in _SIGNED_MUTATIONS:
        now += 1
        signature = sign(secret_b64, now, method, path, body)
    _SIGNED_MUTATIONS.add(signature)
    return now, signature


class SignedClient:
    def __init__(self, http: httpx.AsyncClient, credentials: Credentials) -> None:
        self.http = http
        self.credentials = credentials

    def headers(self, method: str, path: str, body: bytes | None) -> dict[str, str]:
        now, signature = fresh_signature(self.credentials.secret_b64, method, path, body)
        return {
            "X-SCX-API-KEY": self.credentials.api_key,
            "X-SCX-SIGNED": signature,
            "X-SCX-TIMESTAMP": str(now),
            "X-SCX-PASSPHRASE": self.credentials.passphrase,
            "Content-Type": "application/json",
        }

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        request_id: str | None = None,
        raw: bytes | None = None,
    ) -> httpx.Response:
        content = (
            raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        )
        headers = self.headers(method, path, content)
        if method in ("POST", "PATCH", "PUT", "DELETE"):
            headers["X-REQUEST-ID"] = request_id or str(uuid.uuid4())
        return await self.http.request(method, path, content=content, headers=headers)

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, body, **kwargs)
