"""The HTTP edge under abuse (issue 15, items 4, 9 and 11): what a request may carry besides
its route, on the whole app (embedded pipeline, real PostgreSQL) over signed HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.http_world import World, http_world

pytestmark = pytest.mark.integration


def signed_headers(world: World, method: str, path: str, body: bytes | None) -> dict[str, str]:
    return world.client.headers(method, path, body)


async def test_a_get_signature_cannot_be_moved_into_a_body(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """The signed text has no separators: `GET /strategies/traders?participant_code=P1`
    signed once also covers `GET /strategies/traders` with the body `?participant_code=P1{}`,
    a wider read. A body on GET, HEAD or DELETE is refused before the signature is checked."""
    async with http_world(fresh_database_url, tmp_path, "EDGE1", ["P1"]) as world:
        narrow = "/strategies/traders?participant_code=P1"
        captured = signed_headers(world, "GET", narrow, None)
        allowed = await world.http.get(narrow, headers=captured)
        assert allowed.status_code == 200, allowed.text

        moved = await world.http.request(
            "GET",
            "/strategies/traders",
            content=b"?participant_code=P1{}",
            headers=captured,
        )
        assert moved.status_code == 400, moved.text
        assert moved.json()["code"] == "body_not_allowed"
        assert moved.headers["content-type"] == "application/problem+json"

        # Even a body signed as such is refused: GET carries none (its signature covers {}).
        body = b'{"participant_code": "P1"}'
        for method in ("GET", "HEAD", "DELETE"):
            path = "/strategies/traders" if method != "DELETE" else "/strategies/traders/x"
            sent = await world.http.request(
                method, path, content=body, headers=signed_headers(world, method, path, body)
            )
            assert sent.status_code == 400, (method, sent.text)
            if method != "HEAD":
                assert sent.json()["code"] == "body_not_allowed"

        # Announced by Transfer-Encoding alone, still a body.
        async def chunks():  # type: ignore[no-untyped-def]
            yield b"?participant_code=P1{}"

        chunked = await world.http.request(
            "GET", "/strategies/traders", content=chunks(), headers=captured
        )
        assert chunked.status_code == 400, chunked.text
        assert chunked.json()["code"] == "body_not_allowed"

        # A GET without a body signs {} as before, Content-Length: 0 included.
        plain = signed_headers(world, "GET", "/strategies/traders", None)
        empty = await world.http.get(
            "/strategies/traders", headers={**plain, "Content-Length": "0"}
        )
        assert empty.status_code == 200, empty.text


async def test_a_trailing_slash_with_a_foreign_host_is_not_redirected(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """`GET /strategies/` with `Host: evil.example` answered a 307 to
    http://evil.example/strategies, and a following client re-sent its signing headers there."""
    async with http_world(fresh_database_url, tmp_path, "EDGE2", ["P1"]) as world:
        for method, path in (
            ("GET", "/strategies/"),
            ("POST", "/strategies/"),
            ("GET", "/strategies/operations/"),
            ("GET", "/time/"),
        ):
            headers = {**signed_headers(world, method, path, None), "Host": "evil.example"}
            answer = await world.http.request(method, path, headers=headers)
            assert answer.status_code in (404, 405), (method, path, answer.status_code)
            assert "location" not in answer.headers, (method, path, answer.headers)
            assert answer.json()["code"] in ("not_found", "method_not_allowed")


async def test_hosts_outside_the_trusted_list_are_refused(
    fresh_database_url: str, tmp_path: Path
) -> None:
    async with http_world(
        fresh_database_url, tmp_path, "EDGE3", ["P1"], trusted_hosts="api.test,*.example.org"
    ) as world:
        for host, status in (
            ("api.test", 200),
            ("API.test:8443", 200),
            ("eu.example.org", 200),
            ("example.org", 400),
            ("evil.example", 400),
            ("api.test.evil.example", 400),
        ):
            answer = await world.http.get("/time", headers={"Host": host})
            assert answer.status_code == status, (host, answer.text)
            if status == 400:
                assert answer.json()["code"] == "invalid_host"
