"""Which headers cross Outpost in each direction, checked on raw bytes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.rawhttp import request_bytes, send_raw
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}
AGENT_PSK = "psk-test-agent-1"
HOSTS = {
    "hosts": [
        {
            "id": "agent-1",
            "cidrs": ["127.0.0.0/8"],
            "auth_token_env": "AGENT_PSK",
            "can_call_sensitive": True,
        }
    ]
}
HOST_ENV = {**SECRET_ENV, "AGENT_PSK": AGENT_PSK}
AGENT = [("X-Provider", "github"), ("X-Outpost-Auth", AGENT_PSK)]
BEARER = {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"}
API_KEY_HEADER = {
    "type": "api_key_header",
    "env": "OUTPOST_TEST_SECRET",
    "header": "X-Api-Key",
}


def github(upstream: RecordingUpstream, auth: dict[str, Any]) -> dict[str, Any]:
    """Return an allowlist provider for issues, with ``auth``."""
    return {
        "name": "github",
        "base_url": upstream.url,
        "auth": auth,
        "forwarding": {
            "mode": "allowlist",
            "allow": [
                {"path": "/repos/*/*/issues", "methods": ["GET", "POST"]},
                {"path": "/repos/*/*/issues/*", "methods": ["GET", "POST"]},
            ],
            "deny": ["/admin/**"],
        },
    }


def names(headers: list[tuple[str, str]]) -> set[str]:
    """Return the lower-case names of ``headers``."""
    return {name.lower() for name, _ in headers}


def test_hop_by_hop_headers_dropped_both_ways(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(
        headers=[
            ("Content-Type", "application/json"),
            ("Connection", "close, X-Up-Hop"),
            ("X-Up-Hop", "internal-only"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authenticate", "Basic"),
            ("Trailer", "X-Checksum"),
            ("X-Kept", "yes"),
        ]
    )
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get(
        "/repos/acme/app/issues",
        [
            *AGENT,
            ("Connection", "keep-alive, X-Hop-Test, Authorization"),
            ("X-Hop-Test", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic dGVzdDp0ZXN0"),
            ("Proxy-Connection", "keep-alive"),
            ("X-Kept", "yes"),
        ],
    )

    assert response.status == 200
    assert response.body == b'{"ok":true}'
    request = upstream.requests[0]
    forwarded = names(request.headers)
    for dropped in (
        "x-hop-test",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
        "x-outpost-auth",
        "x-provider",
    ):
        assert dropped not in forwarded, dropped
    assert request.header_values("authorization") == [f"Bearer {TEST_SECRET}"]
    assert request.header_values("x-kept") == ["yes"]
    returned = names(response.headers)
    for dropped in ("x-up-hop", "keep-alive", "proxy-authenticate", "trailer"):
        assert dropped not in returned, dropped
    assert response.header_values("x-kept") == ["yes"]


def test_connection_naming_injected_header_keeps_it(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost(
        [github(upstream, API_KEY_HEADER)], hosts=HOSTS, env=HOST_ENV
    )

    response = outpost.get(
        "/repos/acme/app/issues",
        [*AGENT, ("Connection", "X-API-KEY"), ("X-Api-Key", "agent-fake")],
    )

    assert response.status == 200
    assert upstream.requests[0].header_values("x-api-key") == [TEST_SECRET]


def test_agent_credentials_replaced_by_api_key(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost(
        [github(upstream, API_KEY_HEADER)], hosts=HOSTS, env=HOST_ENV
    )

    response = outpost.get(
        "/repos/acme/app/issues",
        [
            *AGENT,
            ("Authorization", "Bearer agent-made-up"),
            ("X-Api-Key", "agent-fake"),
            ("x-api-key", "agent-fake-2"),
            ("Cookie", "session=abc"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Goog-Api-Key", "agent-goog"),
            ("X-Amz-Security-Token", "agent-amz"),
            ("Api-Key", "agent-azure"),
        ],
    )

    assert response.status == 200
    request = upstream.requests[0]
    assert request.header_values("x-api-key") == [TEST_SECRET]
    forwarded = names(request.headers)
    for dropped in (
        "authorization",
        "cookie",
        "proxy-authorization",
        "x-outpost-auth",
        "x-goog-api-key",
        "x-amz-security-token",
        "api-key",
    ):
        assert dropped not in forwarded, dropped
    assert b"agent-" not in request.raw_head
    assert TEST_SECRET.encode() not in response.raw + response.body


def test_two_agent_authorizations_become_one(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get(
        "/repos/acme/app/issues",
        [
            *AGENT,
            ("Authorization", "Basic Zm9vOmJhcg=="),
            ("authorization", "Bearer agent-2"),
        ],
    )

    assert response.status == 200
    assert upstream.requests[0].header_values("authorization") == [
        f"Bearer {TEST_SECRET}"
    ]
    assert TEST_SECRET.encode() not in response.raw + response.body


ROUTING_OVERRIDES = [
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "Forwarded",
    "X-Real-IP",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-HTTP-Method-Override",
]


def test_routing_override_headers_dropped(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    for header in ROUTING_OVERRIDES:
        before = upstream.count
        response = outpost.get(
            "/repos/acme/app/issues", [*AGENT, (header, "/admin/keys")]
        )

        assert response.status in (200, 400, 403), header
        for request in upstream.requests[before:]:
            assert header.lower() not in names(request.headers), header
            assert b"/admin" not in request.raw_head, header


def test_repeated_request_headers_kept_in_order(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    outpost.get(
        "/repos/acme/app/issues",
        [*AGENT, ("X-Tag", "a"), ("Accept", "text/plain"), ("X-Tag", "b")],
    )

    assert upstream.requests[0].header_values("x-tag") == ["a", "b"]


@pytest.mark.parametrize("spelling", ["Server", "SERVER"])
def test_upstream_server_and_date_sent_once(
    start_outpost: StartOutpost, upstream: RecordingUpstream, spelling: str
) -> None:
    upstream.handler = lambda request, connection: Reply(
        headers=[
            ("Content-Type", "application/json"),
            (spelling, "upstream/1.0"),
            ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ]
    )
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get("/repos/acme/app/issues", AGENT)

    assert response.header_values("server") == ["upstream/1.0"]
    assert response.header_values("date") == ["Mon, 01 Jan 2024 00:00:00 GMT"]


def test_server_and_date_present_without_upstream_ones(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get("/repos/acme/app/issues", AGENT)

    assert len(response.header_values("server")) == 1
    assert len(response.header_values("date")) == 1


def test_repeated_set_cookie_not_merged(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    cookies = [
        "a=1",
        "b=2; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/",
        "c=3; HttpOnly",
    ]
    upstream.handler = lambda request, connection: Reply(
        headers=[("Set-Cookie", cookie) for cookie in cookies]
    )
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get("/repos/acme/app/issues", AGENT)

    assert response.header_values("set-cookie") == cookies


def test_agent_request_id_kept(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get(
        "/repos/acme/app/issues", [*AGENT, ("X-Request-Id", "req-abc.123")]
    )

    assert response.header_values("x-request-id") == ["req-abc.123"]


def test_upstream_cannot_spoof_outpost_headers(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(
        headers=[
            ("Content-Type", "application/json"),
            ("X-Request-Id", "upstream-req-7"),
            ("X-Proxy-Cache", "HIT"),
            ("X-Proxy-Provider", "someone-else"),
            ("X-Outpost-Ratelimit-Remaining", "999"),
        ]
    )
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get(
        "/repos/acme/app/issues", [*AGENT, ("X-Request-Id", "agent-req-1")]
    )

    assert response.status == 200
    assert response.header_values("x-request-id") == ["agent-req-1"]
    assert response.header_values("x-upstream-request-id") == ["upstream-req-7"]
    assert response.header_values("x-proxy-cache") == ["BYPASS"]
    assert response.header_values("x-proxy-provider") == ["github"]
    assert "999" not in response.header_values("x-outpost-ratelimit-remaining")


def test_utf8_header_value_forwarded_byte_for_byte(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get("/repos/acme/app/issues", [*AGENT, ("X-Title", "café ✓")])

    assert response.status == 200
    assert "X-Title: café ✓".encode() in upstream.requests[0].raw_head


def test_non_utf8_header_value_refused(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)
    head = request_bytes("GET", "/repos/acme/app/issues", AGENT)

    response = send_raw(
        outpost.port, head.replace(b"\r\n\r\n", b"\r\nX-Title: caf\xe9\r\n\r\n")
    )

    assert response.status == 400
    assert response.error_code == "PROXY_BAD_REQUEST"
    assert b"x-title" in response.body
    assert upstream.count == 0


@pytest.mark.parametrize("value", ["café".encode(), b"caf\xe9"])
def test_non_ascii_response_header_relayed_byte_for_byte(
    start_outpost: StartOutpost, upstream: RecordingUpstream, value: bytes
) -> None:
    def reply(request: RecordedRequest, connection: Connection) -> None:
        connection.send(
            b"HTTP/1.1 200 OK\r\nX-Name: %s\r\nContent-Length: 2\r\n\r\nok" % value
        )

    upstream.handler = reply
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    response = send_raw(
        outpost.port, request_bytes("GET", "/repos/acme/app/issues", AGENT)
    )

    assert response.status == 200
    assert b"\r\nx-name: " + value + b"\r\n" in response.raw.lower()
    assert response.body == b"ok"


def test_agent_user_agent_and_accept_sent_once(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream, BEARER)], hosts=HOSTS, env=HOST_ENV)

    outpost.get(
        "/repos/acme/app/issues",
        [*AGENT, ("User-Agent", "agent/1.0"), ("Accept", "application/json")],
    )

    request = upstream.requests[0]
    assert request.header_values("user-agent") == ["agent/1.0"]
    assert request.header_values("accept") == ["application/json"]


def test_default_headers_merge_before_auth(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    provider = github(upstream, BEARER)
    provider["default_headers"] = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "Authorization": "Bearer from-default-headers",
    }
    outpost = start_outpost([provider], hosts=HOSTS, env=HOST_ENV)

    outpost.get("/repos/acme/app/issues", [*AGENT, ("accept", "text/plain")])

    request = upstream.requests[0]
    assert request.header_values("accept") == ["application/vnd.github+json"]
    assert request.header_values("x-github-api-version") == ["2022-11-28"]
    assert request.header_values("authorization") == [f"Bearer {TEST_SECRET}"]


def test_strip_response_headers_removed(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(
        headers=[
            ("Content-Type", "application/json"),
            ("X-Internal-Trace", "node-7"),
            ("Set-Cookie", "tracking=1"),
            ("X-Kept", "yes"),
        ]
    )
    provider = github(upstream, BEARER)
    provider["strip_response_headers"] = ["x-internal-trace", "Set-Cookie"]
    outpost = start_outpost([provider], hosts=HOSTS, env=HOST_ENV)

    response = outpost.get("/repos/acme/app/issues", AGENT)

    assert response.header("x-internal-trace") is None
    assert response.header("set-cookie") is None
    assert response.header_values("x-kept") == ["yes"]
