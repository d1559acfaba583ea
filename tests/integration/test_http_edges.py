"""The HTTP edge under abuse (issue 15, items 4, 9 and 11): what a request may carry besides
its route, on the whole app (embedded pipeline, real PostgreSQL) over signed HTTP."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

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

        # Even a body signed as such is refused: a GET carries none (its signature covers {}).
        body = b'{"participant_code": "P1"}'
        path = "/strategies/traders"
        sent = await world.http.request(
            "GET", path, content=body, headers=signed_headers(world, "GET", path, body)
        )
        assert sent.status_code == 400, sent.text
        assert sent.json()["code"] == "body_not_allowed"
        # So do the admin routes that read or delete.
        hooks = f"/admin/platforms/{world.platform_id}/webhooks"
        hook = (await world.http.get(hooks, headers=world.admin)).json()[0]["id"]
        for method, admin_path in (("GET", hooks), ("DELETE", f"{hooks}/{hook}")):
            sent = await world.http.request(method, admin_path, content=b"{}", headers=world.admin)
            assert sent.status_code == 400, (method, sent.text)
            assert sent.json()["code"] == "body_not_allowed"
        # A caller that does not prove who it is learns nothing more than before: 401.
        anonymous = await world.http.request("GET", path, content=b"{}")
        assert anonymous.status_code == 401, anonymous.text

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


async def test_bodies_are_utf8_json_without_repeated_members(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """Python's json read UTF-16, UTF-32 and a UTF-8 BOM, and kept the last of two members of
    the same name: one body could mean two things to two readers."""
    async with http_world(fresh_database_url, tmp_path, "EDGE4", ["P1"]) as world:
        text = '{"quoted_currency": "USD", "metadata": {"k": 1}}'
        for raw, code in (
            (b"\xef\xbb\xbf" + text.encode(), "unsupported_encoding"),
            (text.encode("utf-16"), "unsupported_encoding"),
            (text.encode("utf-16-le"), "unsupported_encoding"),
            (text.encode("utf-32"), "unsupported_encoding"),
            (b'{"quoted_currency": "USD", "metadata": {"k": "\xff"}}', "unsupported_encoding"),
            (b'{"quoted_currency": "EUR", "quoted_currency": "USD"}', "duplicate_key"),
            (b'{"quoted_currency": "USD", "metadata": {"a": 1, "a": 2}}', "duplicate_key"),
            (b'{"quoted_currency": "USD", "metadata": {"a": NaN}}', "invalid_json"),
            (
                b'{"quoted_currency": "USD", "metadata": {"n": ' + b"9" * 5000 + b"}}",
                "invalid_json",
            ),
        ):
            refused = await world.client.post("/strategies", None, raw=raw)
            assert refused.status_code == 400, (raw[:40], refused.text)
            assert refused.json()["code"] == code, (raw[:40], refused.text)

        strategy = await world.strategy()
        repeated = (
            b'{"allocations": [{"underlying_currency": "BTC", "weight": "1"}], "participants": '
            b'[{"participant_code": "P1", "amount": "10", "amount": "1000000"}]}'
        )
        refused = await world.client.post(f"/strategies/{strategy}/enroll", None, raw=repeated)
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "duplicate_key"
        assert refused.json()["errors"] == [{"field": "body", "message": '"amount" appears twice'}]

        admin = await world.http.put(
            f"/admin/platforms/{world.platform_id}/participants",
            content=b'{"participants": [], "participants": [{"participant_code": "P2"}]}',
            headers={**world.admin, "Content-Type": "application/json"},
        )
        assert admin.status_code == 400, admin.text
        assert admin.json()["code"] == "duplicate_key"

        body = text.encode()
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = world.client.headers("POST", "/strategies", body)
            headers["X-REQUEST-ID"] = str(uuid4())
            if content_type is None:
                del headers["Content-Type"]
            else:
                headers["Content-Type"] = content_type
            refused = await world.http.post("/strategies", content=body, headers=headers)
            assert refused.status_code == 415, (content_type, refused.text)
            assert refused.json()["code"] == "unsupported_media_type"
        for content_type in ("application/json; charset=UTF-8", "application/merge-patch+json"):
            headers = world.client.headers("POST", "/strategies", body)
            headers.update({"X-REQUEST-ID": str(uuid4()), "Content-Type": content_type})
            created = await world.http.post("/strategies", content=body, headers=headers)
            assert created.status_code == 201, (content_type, created.text)


async def test_unknown_filters_are_named_and_refused(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """A misspelt filter was ignored: `?statu=failed` listed every Operation."""
    async with http_world(fresh_database_url, tmp_path, "EDGE5", ["P1"]) as world:
        strategy = await world.strategy()
        for path, unknown in (
            ("/strategies/operations?statu=failed", ["statu"]),
            ("/strategies/traders?participant=P1&size=5&zeta=1", ["participant", "zeta"]),
            ("/strategies/executions?page=1&created_at=2026", ["created_at"]),
            ("/strategies?metadata.k=1", ["metadata.k"]),
            ("/strategies/events?since=0", ["since"]),
            (f"/strategies/{strategy}?expand=traders", ["expand"]),
        ):
            refused = await world.client.get(path)
            assert refused.status_code == 400, (path, refused.text)
            assert refused.json()["code"] == "unknown_filter", (path, refused.text)
            assert [e["field"] for e in refused.json()["errors"]] == unknown
        for path in (
            f"/strategies/operations?strategy_id={strategy}&type=enrollment&status=settled"
            "&created_at[gte]=2026-01-01T00:00:00Z&created_at[lt]=2099-01-01T00:00:00Z&page=1&size=5",
            f"/strategies/traders?strategy_id={strategy}&participant_code=P1&auto_rebalance=true",
            "/strategies/events?limit=5",
            "/strategies?page=1&size=10",
        ):
            allowed = await world.client.get(path)
            assert allowed.status_code == 200, (path, allowed.text)
        deliveries = await world.http.get(
            f"/admin/platforms/{world.platform_id}/webhooks", headers=world.admin
        )
        hook = deliveries.json()[0]["id"]
        refused = await world.http.get(
            f"/admin/platforms/{world.platform_id}/webhooks/{hook}/deliveries?state=dead",
            headers=world.admin,
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "unknown_filter"


async def test_errors_quote_only_a_bounded_prefix_of_what_they_refuse(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """A 1 MB invalid value came back whole in the problem document."""
    async with http_world(fresh_database_url, tmp_path, "EDGE6", ["P1"]) as world:
        huge = "X" * 1_000_000
        strategy = await world.strategy()
        for path, body in (
            ("/strategies", {"quoted_currency": huge}),
            ("/strategies", {"quoted_currency": "USD", huge: 1}),
            (
                f"/strategies/{strategy}/enroll",
                {
                    "allocations": [{"underlying_currency": "BTC", "weight": "1"}],
                    "participants": [{"participant_code": "P1", "amount": huge}],
                },
            ),
            (
                f"/strategies/{strategy}/enroll",
                {
                    "allocations": [{"underlying_currency": "BTC", "weight": "1"}],
                    "participants": [
                        {"participant_code": f"{n}", "amount": "x"} for n in range(5000)
                    ],
                },
            ),
        ):
            refused = await world.client.post(path, body)
            assert refused.status_code == 400, refused.text[:500]
            assert len(refused.content) < 40_000, (path, len(refused.content))
            assert "X" * 600 not in refused.text


async def test_pages_over_the_response_budget_are_cut_and_following_them_yields_each_item_once(
    fresh_database_url: str, tmp_path: Path
) -> None:
    """`GET /strategies?size=200` and `GET /strategies/events?limit=1000` were built whole,
    whatever they weighed (68 MB and 82 MB)."""
    budget = 64 * 1024
    async with http_world(
        fresh_database_url, tmp_path, "EDGE7", ["P1"], max_response_bytes=budget
    ) as world:
        created = []
        for n in range(14):
            metadata = {"blob": "x" * 16_000, "n": n} if n >= 3 else {"n": n}  # newest: big
            answer = await world.client.post(
                "/strategies", {"quoted_currency": "USD", "metadata": metadata}
            )
            assert answer.status_code == 201, answer.text
            created.append(answer.json()["id"])
        await world.caught_up()

        first = await world.client.get("/strategies?size=10")
        assert first.status_code == 200, first.text
        envelope = first.json()
        assert len(first.content) <= budget
        assert (envelope["page"], envelope["size"], envelope["total_pages"]) == (1, 2, 7)

        seen: list[str] = []
        page, size, total_pages = 1, 10, 1
        while page <= total_pages:
            answer = await world.client.get(f"/strategies?page={page}&size={size}")
            assert answer.status_code == 200, answer.text
            assert len(answer.content) <= budget
            body = answer.json()
            seen += [item["id"] for item in body["message"]]
            page, size, total_pages = body["page"] + 1, body["size"], body["total_pages"]
        assert len(seen) == len(set(seen)) == 14
        assert set(seen) == set(created)

        # A later page asked in the original size starts at the item asked for.
        later = (await world.client.get("/strategies?page=2&size=5")).json()
        assert (later["page"], later["size"], later["total_pages"]) == (6, 1, 14)
        assert [item["id"] for item in later["message"]] == seen[5:6]
        last = (await world.client.get("/strategies?page=2&size=10")).json()
        assert (last["page"], last["size"], last["total_pages"]) == (2, 10, 2)
        assert [item["id"] for item in last["message"]] == seen[10:]

        events: list[tuple[str, int]] = []
        cut = False
        after = ""
        while True:
            answer = await world.client.get(f"/strategies/events?limit=1000&after={after}")
            assert answer.status_code == 200, answer.text
            assert len(answer.content) <= budget
            body = answer.json()
            events += [(e["aggregate_id"], e["aggregate_version"]) for e in body["events"]]
            cut |= not body["caught_up"] and 0 < len(body["events"]) < 14
            after = body["next"]
            if body["caught_up"]:
                break
        assert cut, "no page was cut short"
        assert len(events) == len(set(events))
        assert {aggregate for aggregate, _ in events} == set(created)
