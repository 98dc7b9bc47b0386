"""End-to-end forwarding through a real Outpost process to a recording upstream."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.rejections import access_line, new_request_id
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply


def github(upstream: RecordingUpstream, **overrides: Any) -> dict[str, Any]:
    """Return a transparent provider pointing at ``upstream``."""
    provider: dict[str, Any] = {
        "name": "github",
        "base_url": upstream.url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {"mode": "transparent", "treat_writes_as_sensitive": False},
    }
    provider.update(overrides)
    return provider


SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}


def test_prefix_route_injects_bearer(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream)], env=SECRET_ENV)

    response = outpost.get(
        "/p/github/repos/acme/app/issues?state=open&x=%2F&x=2&flag",
        [("Authorization", "Bearer agent-dummy")],
    )

    assert response.status == 200
    assert response.body == b'{"ok":true}'
    assert upstream.count == 1
    request = upstream.requests[0]
    assert request.target == "/repos/acme/app/issues?state=open&x=%2F&x=2&flag"
    assert request.header_values("authorization") == [f"Bearer {TEST_SECRET}"]
    assert request.header("host") == f"127.0.0.1:{upstream.port}"
    assert response.header("x-proxy-provider") == "github"
    assert response.header("x-proxy-cache") == "BYPASS"
    assert response.header("server-timing") is not None
    assert response.header("x-request-id")


def test_header_route_forwards_p_prefix_unchanged(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream)], env=SECRET_ENV)

    response = outpost.get("/p/other/x", [("X-Provider", "GitHub")])

    assert response.status == 200
    assert upstream.requests[0].path == "/p/other/x"


def test_legacy_broker_header_selects_provider(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream)], env=SECRET_ENV)

    response = outpost.get("/user", [("X-Broker", "github")])

    assert response.status == 200
    assert upstream.requests[0].path == "/user"


def test_default_provider_serves_unselected_paths(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost(
        [github(upstream)], env=SECRET_ENV, args=["--default-provider", "github"]
    )

    assert outpost.get("/user").status == 200
    assert outpost.get("/healthz").json() == {"status": "ok"}
    assert [request.path for request in upstream.requests] == ["/user"]


def test_base_url_path_prefix_is_kept(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    provider = github(upstream, base_url=upstream.url + "/api")
    outpost = start_outpost([provider], env=SECRET_ENV)

    outpost.get("/p/github/chat.postMessage")

    assert upstream.requests[0].path == "/api/chat.postMessage"


def test_unknown_provider_lists_usable_ones(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream)], env=SECRET_ENV)

    response = outpost.get("/x", [("X-Provider", "does-not-exist")])

    assert response.status == 400
    assert response.error_code == "PROXY_UNKNOWN_PROVIDER"
    assert response.json()["error"]["metadata"] == {"providers": ["github"]}  # type: ignore[index]
    assert upstream.count == 0


def test_missing_credential_answers_503(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    provider = github(upstream, auth={"type": "bearer_static", "env": "UNSET_VAR_X"})
    outpost = start_outpost([provider], args=["--allow-missing-credentials"])

    response = outpost.get("/p/github/user")

    assert response.status == 503
    assert response.error_code == "PROXY_PROVIDER_UNAVAILABLE"
    assert b"UNSET_VAR_X" in response.body
    # A reload cannot see a variable exported after start, so the message
    # must not suggest one.
    assert b"restart Outpost" in response.body
    assert b"reload" not in response.body
    assert upstream.count == 0


def test_redirect_is_returned_not_followed(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    foreign_host: RecordingUpstream,
) -> None:
    upstream.handler = lambda request, connection: Reply(
        status=302, headers=[("Location", foreign_host.url + "/steal")], body=b""
    )
    outpost = start_outpost([github(upstream)], env=SECRET_ENV)

    response = outpost.get("/p/github/repos/a/b/issues")

    assert response.status == 302, response.body
    assert response.header("location") == foreign_host.url + "/steal"
    assert foreign_host.connections == 0
    assert TEST_SECRET.encode() not in response.raw + response.body


def test_repeated_set_cookie_kept_separate(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(
        headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2; Path=/")]
    )
    outpost = start_outpost([github(upstream)], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.header_values("set-cookie") == ["a=1", "b=2; Path=/"]


def test_upstream_unreachable_answers_502(start_outpost: StartOutpost) -> None:
    provider = {
        "name": "github",
        "base_url": "http://127.0.0.1:9",
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
    }
    outpost = start_outpost([provider], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.status == 502
    assert response.error_code == "PROXY_UPSTREAM_ERROR"
    assert b"127.0.0.1:9" not in response.body


def test_upstream_read_timeout_answers_504(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    def slow(request: RecordedRequest, connection: Connection) -> Reply:
        time.sleep(3.0)
        return Reply()

    upstream.handler = slow
    provider = github(upstream, timeouts={"read": 0.5})
    outpost = start_outpost([provider], env=SECRET_ENV)

    response = outpost.get("/p/github/slow")

    assert response.status == 504
    assert response.error_code == "PROXY_UPSTREAM_TIMEOUT"


def test_access_log_line_per_request(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream)], env=SECRET_ENV)

    allowed_id, denied_id = new_request_id(), new_request_id()
    outpost.get(
        "/p/github/search?q=secret-value&token=abc", [("X-Request-Id", allowed_id)]
    )
    outpost.get("/x", [("X-Provider", "nope"), ("X-Request-Id", denied_id)])

    # A line is written after its response, so wait for both.
    lines = [access_line(outpost, allowed_id), access_line(outpost, denied_id)]
    assert (
        len([line for line in outpost.access_lines() if line["path"] != "/healthz"])
        == 2
    )
    allowed, denied = lines
    assert allowed["provider"] == "github"
    assert allowed["path"] == "/search"
    assert allowed["query_params"] == ["q", "token"]
    assert allowed["status"] == 200
    assert allowed["upstream_status"] == 200
    assert denied["status"] == 400
    assert denied["error"] == "PROXY_UNKNOWN_PROVIDER"
    assert "secret-value" not in outpost.output()


def test_access_line_counts_every_body_sent(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream)], env=SECRET_ENV)
    targets = [
        "/p/github/repos/a/b/issues",
        "/providers",
        "/docs",
        "/metrics",
        "/p/nope/x",
        "/healthz",
    ]

    for target in targets:
        request_id = new_request_id()
        response = outpost.get(target, [("X-Request-Id", request_id)])

        line = access_line(outpost, request_id)
        assert response.body, target
        assert line["bytes_out"] == len(response.body), target
