"""Nothing in a request or a response can move the credential to another host.

Every test runs a second recorder, the foreign host, that must never see a
connection: not through a redirect, a crafted path or an absolute-form
request line.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.rawhttp import request_bytes, send_raw
from tests.support.upstream import RecordedRequest, RecordingUpstream, Reply

SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}
SELECT = ("X-Provider", "github")
AUTH_SCHEMES: dict[str, dict[str, Any]] = {
    "api key header": {
        "type": "api_key_header",
        "env": "OUTPOST_TEST_SECRET",
        "header": "X-Api-Key",
    },
    "bearer": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
}


def github(
    upstream: RecordingUpstream, auth: dict[str, Any], mode: str = "transparent"
) -> dict[str, Any]:
    """Return a provider for ``upstream`` that denies /admin/**."""
    forwarding: dict[str, Any] = {
        "mode": mode,
        "treat_writes_as_sensitive": False,
        "deny": ["/admin/**"],
    }
    if mode == "allowlist":
        forwarding["allow"] = [{"path": "/repos/**", "methods": ["GET", "POST"]}]
    return {
        "name": "github",
        "base_url": upstream.url,
        "auth": auth,
        "forwarding": forwarding,
    }


def assert_foreign_untouched(foreign: RecordingUpstream) -> None:
    """Fail if the foreign host saw any connection at all."""
    assert foreign.connections == 0
    assert foreign.count == 0


@pytest.mark.parametrize("scheme", list(AUTH_SCHEMES))
def test_redirects_returned_not_followed(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    foreign_host: RecordingUpstream,
    scheme: str,
) -> None:
    foreign = f"127.0.0.1:{foreign_host.port}"
    redirects = {
        "/repos/a/b/absolute": (302, f"http://{foreign}/steal"),
        "/repos/a/b/network-path": (302, f"//{foreign}/steal"),
        "/repos/a/b/post": (307, f"http://{foreign}/steal"),
        "/repos/a/b/https": (301, f"https://{foreign}/"),
        "/repos/a/b/same-origin": (308, f"{upstream.url}/repos/a/b/moved"),
    }

    def redirect(request: RecordedRequest, connection: object) -> Reply:
        status, location = redirects[request.path]
        return Reply(status=status, headers=[("Location", location)], body=b"")

    upstream.handler = redirect
    provider = github(upstream, AUTH_SCHEMES[scheme], mode="allowlist")
    outpost = start_outpost([provider], env=SECRET_ENV)

    for path, (status, location) in redirects.items():
        method = "POST" if path.endswith("/post") else "GET"
        response = outpost.request(method, path, [SELECT], b"{}")

        assert response.status == status, path
        assert response.header_values("location") == [location], path
        assert TEST_SECRET.encode() not in response.raw + response.body, path
    assert [request.path for request in upstream.requests] == list(redirects)
    assert_foreign_untouched(foreign_host)


def crafted_targets(foreign_port: int) -> list[str]:
    """Return request targets that try to name the foreign host as origin."""
    foreign = f"127.0.0.1:{foreign_port}"
    return [
        f"//{foreign}/x",
        f"@{foreign}/x",
        f"/http://{foreign}/x",
        f"/\\\\{foreign}/x",
        f"/%2F%2F{foreign}/x",
        f"/%5C%5C{foreign}/x",
        f"/repos/acme/app/issues#@{foreign}/",
        f"/repos/acme/app/issues?@{foreign}/x",
        f"/p/github//{foreign}/x",
        f"/p/github/http://{foreign}/x",
        f"/p/github@{foreign}/x",
    ]


def test_path_cannot_repoint_origin(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    foreign_host: RecordingUpstream,
) -> None:
    outpost = start_outpost([github(upstream, AUTH_SCHEMES["bearer"])], env=SECRET_ENV)

    for target in crafted_targets(foreign_host.port):
        headers = [] if target.startswith("/p/") else [SELECT]
        before = upstream.count
        response = outpost.get(target, headers)

        assert response.status in (200, 400, 403), target
        if target.startswith("@"):
            assert response.status == 400, target
        for request in upstream.requests[before:]:
            assert request.target.startswith("/"), target
            assert not request.target.startswith("//"), target
            assert request.header("host") == f"127.0.0.1:{upstream.port}"
    assert_foreign_untouched(foreign_host)


def test_absolute_form_target_stays_on_base_url(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    foreign_host: RecordingUpstream,
) -> None:
    # An absolute-form target is rejected before routing; whatever host it
    # names, nothing but base_url is ever contacted.
    outpost = start_outpost([github(upstream, AUTH_SCHEMES["bearer"])], env=SECRET_ENV)
    own = f"127.0.0.1:{outpost.port}"
    foreign = f"127.0.0.1:{foreign_host.port}"

    denied = [
        f"http://{own}/admin/keys",
        f"HTTP://{own}/admin/keys",
        f"http://{foreign}/admin/keys",
    ]
    for target in denied:
        data = request_bytes("GET", target, [SELECT, ("Host", own)])
        response = send_raw(outpost.port, data)

        assert response.status in (400, 403), target
    assert upstream.count == 0

    data = request_bytes(
        "GET", f"http://{foreign}/repos/acme/app/issues", [SELECT, ("Host", own)]
    )
    response = send_raw(outpost.port, data)

    assert response.status in (200, 400), response.body
    for request in upstream.requests:
        assert request.target == "/repos/acme/app/issues"
        assert request.header("host") == f"127.0.0.1:{upstream.port}"
        assert request.header("authorization") == f"Bearer {TEST_SECRET}"
    assert_foreign_untouched(foreign_host)


def test_absolute_form_with_provider_prefix(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    foreign_host: RecordingUpstream,
) -> None:
    outpost = start_outpost([github(upstream, AUTH_SCHEMES["bearer"])], env=SECRET_ENV)
    foreign = f"127.0.0.1:{foreign_host.port}"

    denied = send_raw(
        outpost.port, request_bytes("GET", f"http://{foreign}/p/github/admin/keys")
    )
    allowed = send_raw(
        outpost.port, request_bytes("GET", f"http://{foreign}/p/github/repos/a/b")
    )

    assert denied.status in (400, 403)
    assert allowed.status in (200, 400)
    assert [request.target for request in upstream.requests] in ([], ["/repos/a/b"])
    assert_foreign_untouched(foreign_host)
