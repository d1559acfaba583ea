"""A signed HTTP client for the API, as a platform would write one (spec §7.2)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from api.auth import sign
from infra.platforms import Credentials


class SignedClient:
    def __init__(self, http: httpx.AsyncClient, credentials: Credentials) -> None:
        self.http = http
        self.credentials = credentials

    def headers(self, method: str, path: str, body: bytes | None) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {
            "X-SCX-API-KEY": self.credentials.api_key,
            "X-SCX-SIGNED": sign(self.credentials.secret_b64, timestamp, method, path, body),
            "X-SCX-TIMESTAMP": timestamp,
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
