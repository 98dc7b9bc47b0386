"""Path, method and origin tricks against a real Outpost process.

Every request is written byte for byte to a socket, because HTTP client
libraries normalise paths and would hide the faults looked for here. One
Outpost process serves the whole module; each test counts what the
recording upstream received during its own requests. A second recorder, the
foreign host, stands for any origin other than ``base_url`` and must never
be contacted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import TEST_SECRET
from tests.support.outpost import OutpostServer
from tests.support.rawhttp import RawResponse, request_bytes, send_raw
from tests.support.rejections import access_line, assert_envelope, new_request_id
from tests.support.upstream import RecordedRequest, RecordingUpstream, Reply

AGENT_PSK = "psk-test-agent-1"
# Unique, so that a test can tell an upstream response from Outpost's own.
UPSTREAM_BODY = b'{"admin":"keys","upstream":"reached"}'
HIGH_LIMITS = {"default": [{"capacity": 100000, "window_ms": 1000}]}
DENY = ["/admin/**", "/repos/*/*/hooks/**"]
ISSUE_RULES = ["/repos/*/*/issues", "/repos/*/*/issues/*"]
OVERRIDE_HEADERS = ("x-http-method-override", "x-http-method", "x-method-override")


def provider(name: str, base_url: str, **forwarding: Any) -> dict[str, Any]:
    """Return a bearer provider named ``name`` whose upstream is ``base_url``."""
    return {
        "name": name,
        "base_url": base_url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {"rate_limits": HIGH_LIMITS, **forwarding},
    }


def issue_rules(methods: list[str]) -> list[dict[str, Any]]:
    """Return allow rules for the issue paths with ``methods``."""
    return [{"path": path, "methods": methods} for path in ISSUE_RULES]


def providers(base_url: str) -> list[dict[str, Any]]:
    """Return the providers of this module, all pointing at ``base_url``.

    ``github`` is an allowlist for issues with GET and POST, ``open`` the same
    deny list in transparent mode, ``readonly`` admits only GET, ``globs``
    has one-segment wildcards, and ``matrix`` accepts ';' path parameters.
    """
    return [
        provider(
            "github",
            base_url,
            mode="allowlist",
            allow=issue_rules(["GET", "POST"]),
            deny=DENY,
        ),
        provider("open", base_url, treat_writes_as_sensitive=False, deny=DENY),
        provider(
            "readonly",
            base_url,
            mode="allowlist",
            allow=issue_rules(["GET"]),
            deny=DENY,
        ),
        provider(
            "globs",
            base_url,
            mode="allowlist",
            allow=[
                {"path": "/repos/*/issues", "methods": ["GET"]},
                {"path": "/repos/*/*/pulls", "methods": ["GET"]},
            ],
        ),
        provider(
            "matrix",
            base_url,
            treat_writes_as_sensitive=False,
            allow_path_parameters=True,
            deny=["/admin/**"],
            allow=[{"path": "/payments/**", "methods": ["GET"], "sensitive": True}],
        ),
    ]


@dataclass
class Stack:
    """One Outpost process, its upstream and the foreign host."""

    outpost: OutpostServer
    upstream: RecordingUpstream
    foreign: RecordingUpstream

    def send(
        self,
        target: str | bytes,
        *,
        provider: str | None = "github",
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        request_id: str | None = None,
    ) -> tuple[RawResponse, list[RecordedRequest]]:
        """Send a raw request as agent-1; return the response and upstream requests."""
        head: list[tuple[str, str]] = [("X-Outpost-Auth", AGENT_PSK)]
        if provider is not None:
            head.append(("X-Provider", provider))
        if request_id is not None:
            head.append(("X-Request-Id", request_id))
        head += headers or []
        raw_target = target if isinstance(target, bytes) else target.encode()
        data = request_bytes(method, "TARGET", head).replace(b"TARGET", raw_target, 1)
        before = self.upstream.count
        response = send_raw(self.outpost.port, data)
        return response, self.upstream.requests[before:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Start the module's Outpost with a recording upstream and a foreign host."""
    upstream = RecordingUpstream(lambda request, connection: Reply(body=UPSTREAM_BODY))
    foreign = RecordingUpstream()
    hosts = {
        "hosts": [
            {
                "id": "agent-1",
                "cidrs": ["127.0.0.0/8"],
                "auth_token_env": "AGENT1_KEY",
                "providers": ["github", "open", "readonly", "globs", "matrix"],
            }
        ]
    }
    outpost = OutpostServer(
        tmp_path_factory.mktemp("outpost"),
        providers(upstream.url),
        hosts=hosts,
        env={"OUTPOST_TEST_SECRET": TEST_SECRET, "AGENT1_KEY": AGENT_PSK},
    ).start()
    yield Stack(outpost, upstream, foreign)
    outpost.stop()
    upstream.close()
    foreign.close()


def assert_bad_request(stack: Stack, response: RawResponse) -> None:
    """Assert a 400 that carries nothing from the upstream."""
    assert response.status == 400, response.body
    assert UPSTREAM_BODY not in response.body
    assert stack.foreign.connections == 0


@pytest.mark.parametrize(
    "target",
    [
        "/repos/acme/app/issues/../../../../admin/keys",
        "/repos/acme/app/issues/./../../../../admin/keys",
        "/repos/acme/app/issues/1/..",
        "/repos/acme/app/issues/%2e%2e/%2e%2e/%2e%2e/%2e%2e/admin/keys",
        "/repos/acme/app/issues/%2E%2e/%2e%2E/admin/keys",
        "/repos/acme/app/issues/.%2E/.%2e/admin/keys",
        "/repos/acme/app/issues/%2e./%2E./admin/keys",
        "/repos/acme/app/issues/%2e/1",
        "/repos/acme/app/issues/1/.",
    ],
)
def test_dot_segments_rejected(stack: Stack, target: str) -> None:
    request_id = new_request_id()

    response, received = stack.send(target, request_id=request_id)

    assert_bad_request(stack, response)
    assert_envelope(response, 400, "PROXY_BAD_REQUEST")
    assert received == []
    assert access_line(stack.outpost, request_id)["reason"] == "dot_segment"


@pytest.mark.parametrize(
    "target",
    [
        "/repos/acme/app/issues/%C0%AE%C0%AE/%C0%AE%C0%AE/admin/keys",
        "/repos/acme/app/issues/%c0%ae%c0%ae%c0%afadmin/keys",
        "/repos/acme/app/issues/%E0%80%AE%E0%80%AE/x/admin/keys",
    ],
)
def test_overlong_utf8_dots_rejected(stack: Stack, target: str) -> None:
    request_id = new_request_id()

    response, received = stack.send(target, provider="open", request_id=request_id)

    assert_bad_request(stack, response)
    assert received == []
    assert access_line(stack.outpost, request_id)["reason"] == "overlong_utf8"


@pytest.mark.parametrize(
    ("method", "target", "reason"),
    [
        ("DELETE", "/repos/acme/app%2Fhooks/42", "encoded_separator"),
        ("GET", "/repos/acme/app/issues%2F..%2F..%2Fhooks/42", "encoded_separator"),
        ("GET", "/repos/acme/app%2fhooks/42", "encoded_separator"),
        ("GET", "/repos/acme/app%5Chooks/42", "encoded_separator"),
        ("GET", "/repos/acme/app%5chooks/42", "encoded_separator"),
        ("GET", "/repos/acme/app\\hooks/42", "backslash"),
    ],
)
def test_encoded_separators_rejected(
    stack: Stack, method: str, target: str, reason: str
) -> None:
    request_id = new_request_id()

    response, received = stack.send(
        target, provider="open", method=method, request_id=request_id
    )

    assert_bad_request(stack, response)
    assert received == []
    assert access_line(stack.outpost, request_id)["reason"] == reason


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("//admin/keys", "not_origin_form"),
        ("///admin/keys", "not_origin_form"),
        ("/repos/acme//app/hooks/1", "empty_segment"),
        ("/repos/acme/app/hooks//1", "empty_segment"),
        ("/admin//keys", "empty_segment"),
    ],
)
def test_repeated_slashes_rejected(stack: Stack, target: str, reason: str) -> None:
    request_id = new_request_id()

    response, received = stack.send(target, provider="open", request_id=request_id)

    assert_bad_request(stack, response)
    assert received == []
    assert access_line(stack.outpost, request_id)["reason"] == reason


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/repos/acme/app/hooks/issues", 404),
        ("/repos/acme/app/pulls/1/merge", 404),
        ("/repos//issues", 400),
        ("/admin/keys?next=/repos/a/issues", 404),
        ("/repos/acme/app/issues", 404),
    ],
)
def test_glob_star_stays_in_one_segment(stack: Stack, target: str, status: int) -> None:
    response, received = stack.send(target, provider="globs")

    assert response.status == status
    assert UPSTREAM_BODY not in response.body
    assert received == []


def test_glob_controls_forwarded_unchanged(stack: Stack) -> None:
    pulls, first = stack.send("/repos/acme/app/pulls", provider="globs")
    issues, second = stack.send("/repos/acme/issues?x=/admin", provider="globs")

    assert pulls.status == 200
    assert issues.status == 200
    assert len(first + second) == 2
    assert first[0].target == "/repos/acme/app/pulls"
    assert second[0].target == "/repos/acme/issues?x=/admin"


def test_absolute_form_rejected(stack: Stack) -> None:
    # Outpost is not a forward proxy: a target with a scheme and host is
    # refused before routing, whatever host it names.
    foreign = f"127.0.0.1:{stack.foreign.port}"

    lower, first = stack.send(f"http://{foreign}/admin/keys")
    upper, second = stack.send(f"HTTP://{foreign}/admin/keys")

    assert_envelope(lower, 400, "PROXY_BAD_REQUEST")
    assert_envelope(upper, 400, "PROXY_BAD_REQUEST")
    assert first + second == []
    assert stack.foreign.connections == 0


def test_absolute_form_allowed_path_rejected(stack: Stack) -> None:
    foreign = f"127.0.0.1:{stack.foreign.port}"

    response, received = stack.send(
        f"http://user@{foreign}/repos/acme/app/issues?state=open",
        headers=[("Host", foreign)],
    )

    assert_bad_request(stack, response)
    assert b"origin-form" in response.body
    assert received == []


def test_absolute_form_dot_segments_rejected(stack: Stack) -> None:
    foreign = f"127.0.0.1:{stack.foreign.port}"

    response, received = stack.send(
        f"http://{foreign}/repos/acme/app/issues/%2e%2e/../../admin/keys"
    )

    assert_bad_request(stack, response)
    assert received == []


def test_method_override_headers_rejected(stack: Stack) -> None:
    request_id = new_request_id()
    overrides = [(name, "DELETE") for name in OVERRIDE_HEADERS]

    response, received = stack.send(
        "/repos/acme/app/issues/1",
        provider="readonly",
        headers=overrides,
        request_id=request_id,
    )

    assert_envelope(response, 400, "PROXY_BAD_REQUEST")
    assert received == []
    assert access_line(stack.outpost, request_id)["reason"] == "method_override"


@pytest.mark.parametrize(
    "name", ["X_HTTP_Method_Override", "x_http_method", "X-Method_Override"]
)
def test_underscore_override_header_rejected(stack: Stack, name: str) -> None:
    # CGI and WSGI servers map '-' and '_' to the same variable name, so the
    # upstream reads X_HTTP_Method_Override as X-HTTP-Method-Override.
    response, received = stack.send(
        "/repos/acme/app/issues/1", provider="readonly", headers=[(name, "DELETE")]
    )

    assert_envelope(response, 400, "PROXY_BAD_REQUEST")
    assert received == []


def test_underscore_header_variants_not_forwarded(stack: Stack) -> None:
    variants = [
        ("X_Forwarded_For", "10.9.9.9"),
        ("X_Real_IP", "10.9.9.9"),
        ("X_Original_URL", "/admin/keys"),
        ("X_Rewrite_URL", "/admin/keys"),
        ("X_Forwarded_Host", "evil.example"),
        ("X_Outpost_Auth", AGENT_PSK),
        ("X_Api_Key", "agent-made-up"),
        ("Proxy_Authorization", "Basic Zm9vOmJhcg=="),
        ("X_HTTP_Method_Override", "POST"),
    ]

    response, received = stack.send("/repos/acme/app/issues", headers=variants)

    assert response.status == 200
    assert len(received) == 1
    forwarded = {name.lower() for name, _ in received[0].headers}
    for name, value in variants:
        assert name.lower() not in forwarded
        assert value.encode() not in received[0].raw_head


@pytest.mark.parametrize(
    "query",
    [
        "_method=DELETE&x-http-method-override=DELETE",
        "_method=DELETE",
        "%5Fmethod=DELETE",
        "_METHOD=delete",
        "a=1;_method=DELETE",
        "X-HTTP-Method=PUT",
        "x-method-override=PATCH",
        "_method=GET&_method=DELETE",
        ".method=DELETE",
        "%2Emethod=DELETE",
        "%20.method=DELETE",
        "+_method=DELETE",
        "_method%00x=DELETE",
        "_method[x]=DELETE",
    ],
)
def test_method_override_query_rejected(stack: Stack, query: str) -> None:
    response, received = stack.send(
        f"/repos/acme/app/issues/1?{query}", provider="readonly"
    )

    assert_envelope(response, 400, "PROXY_BAD_REQUEST")
    assert received == []


def test_post_on_get_rule_gets_405(stack: Stack) -> None:
    request_id = new_request_id()

    response, received = stack.send(
        "/repos/acme/app/issues",
        provider="readonly",
        method="POST",
        request_id=request_id,
    )

    error = assert_envelope(response, 405, "PROXY_METHOD_NOT_ALLOWED")
    assert response.header("allow") == "GET"
    assert error["metadata"] == {"allow": ["GET"]}
    assert received == []
    assert access_line(stack.outpost, request_id)["reason"] == "method_not_allowed"


def test_admitted_override_header_not_forwarded(stack: Stack) -> None:
    overrides = [(name, "post") for name in OVERRIDE_HEADERS]

    response, received = stack.send("/repos/acme/app/issues", headers=overrides)

    assert response.status == 200
    assert len(received) == 1
    assert received[0].method == "GET"
    for name in OVERRIDE_HEADERS:
        assert received[0].header_values(name) == []


def test_url_override_headers_not_forwarded(stack: Stack) -> None:
    overrides = [
        ("X-Original-URL", "/admin/keys"),
        ("X-Rewrite-URL", "/admin/keys"),
        ("X-Original-Host", "evil.example"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-HTTP-Host-Override", "evil.example"),
    ]

    response, received = stack.send("/repos/acme/app/issues", headers=overrides)

    assert response.status == 200
    assert len(received) == 1
    assert b"/admin" not in received[0].raw_head
    assert b"evil.example" not in received[0].raw_head


@pytest.mark.parametrize(
    ("target", "forwarded"),
    [
        ("/repos/acme/app/issues#@{foreign}/", "/repos/acme/app/issues"),
        ("/p/open/@{foreign}/x", "/@{foreign}/x"),
        ("/p/open/:@{foreign}/x", "/:@{foreign}/x"),
    ],
)
def test_authority_text_stays_in_path(
    stack: Stack, target: str, forwarded: str
) -> None:
    foreign = f"127.0.0.1:{stack.foreign.port}"
    selected = None if target.startswith("/p/") else "open"

    response, received = stack.send(
        target.format(foreign=foreign), provider=selected, headers=[("Host", foreign)]
    )

    assert response.status == 200
    assert [request.target for request in received] == [
        forwarded.format(foreign=foreign)
    ]
    assert received[0].header("host") == f"127.0.0.1:{stack.upstream.port}"
    assert received[0].header("authorization") == f"Bearer {TEST_SECRET}"
    assert stack.foreign.connections == 0


def test_header_selection_checks_verbatim_path(stack: Stack) -> None:
    response, received = stack.send(
        "/p/github/repos/acme/app/issues", provider="readonly"
    )

    assert_envelope(response, 404, "PROXY_NO_ROUTE")
    assert received == []


@pytest.mark.parametrize(
    "target",
    ["/p/open/admin/keys", "/p/OPEN/admin/keys", "/p/%6Fpen/admin/keys"],
)
def test_prefix_selection_checks_stripped_path(stack: Stack, target: str) -> None:
    response, received = stack.send(target, provider=None)

    assert_envelope(response, 403, "PROXY_PATH_DENIED")
    assert received == []


@pytest.mark.parametrize(
    ("target", "selected"),
    [
        ("/repos/acme/app/issues", "GitHub"),
        ("/repos/acme/app/issues", " GITHUB "),
        ("/p/GITHUB/repos/acme/app/issues", None),
    ],
)
def test_provider_name_ignores_case(
    stack: Stack, target: str, selected: str | None
) -> None:
    response, received = stack.send(target, provider=selected)

    assert response.status == 200
    assert response.header("x-proxy-provider") == "github"
    assert [request.target for request in received] == ["/repos/acme/app/issues"]


@pytest.mark.parametrize(
    "selection",
    [
        [("X-Provider", "readonly"), ("X-Provider", "open")],
        [("X-Broker", "open"), ("X-Provider", "readonly")],
        [("X-Provider", "open"), ("X-Broker", "github")],
    ],
)
def test_conflicting_provider_headers_rejected(
    stack: Stack, selection: list[tuple[str, str]]
) -> None:
    request_id = new_request_id()

    response, received = stack.send(
        "/repos/acme/app/issues",
        provider=None,
        headers=selection,
        request_id=request_id,
    )

    assert_envelope(response, 400, "PROXY_BAD_REQUEST")
    assert received == []
    assert access_line(stack.outpost, request_id)["reason"] == "ambiguous_provider"


def test_repeated_provider_header_accepted(stack: Stack) -> None:
    selection = [("X-Provider", "open"), ("X-Broker", "OPEN")]

    response, received = stack.send(
        "/repos/acme/app/issues", provider=None, headers=selection
    )

    assert response.status == 200
    assert len(received) == 1


@pytest.mark.parametrize(
    "target",
    ["/admin;x/keys", "/admin;/keys", "/admin;a=1;b=2/keys"],
)
def test_path_parameters_cannot_dodge_deny(stack: Stack, target: str) -> None:
    response, received = stack.send(target, provider="matrix")

    assert_envelope(response, 403, "PROXY_PATH_DENIED")
    assert received == []


@pytest.mark.parametrize(
    ("provider", "target"),
    [
        ("open", "/admin%3Bx/keys"),
        ("open", "/admin%3b/keys"),
        ("matrix", "/admin%3Bx/keys"),
    ],
)
def test_encoded_semicolon_cannot_dodge_deny(
    stack: Stack, provider: str, target: str
) -> None:
    response, received = stack.send(target, provider=provider)

    assert_envelope(response, 403, "PROXY_PATH_DENIED")
    assert received == []


def test_encoded_semicolon_forwarded_elsewhere(stack: Stack) -> None:
    response, received = stack.send("/files/a%3Bb", provider="open")

    assert response.status == 200
    assert [request.target for request in received] == ["/files/a%3Bb"]


def test_path_parameters_cannot_dodge_sensitive_rule(stack: Stack) -> None:
    response, received = stack.send("/payments;v=2/cards", provider="matrix")

    assert_envelope(response, 403, "PROXY_SENSITIVE_DENIED")
    assert received == []


def test_path_parameters_forwarded_when_accepted(stack: Stack) -> None:
    response, received = stack.send("/repos/a;v=1/b", provider="matrix")

    assert response.status == 200
    assert [request.target for request in received] == ["/repos/a;v=1/b"]


@pytest.mark.parametrize(
    "target", ["/admin", "/admin/", "/repos/acme/app/hooks", "/repos/acme/app/hooks/"]
)
def test_deny_double_star_covers_its_prefix(stack: Stack, target: str) -> None:
    response, received = stack.send(target, provider="open")

    assert_envelope(response, 403, "PROXY_PATH_DENIED")
    assert received == []


def test_deny_prefix_not_widened_past_segment(stack: Stack) -> None:
    response, received = stack.send("/administrator", provider="open")

    assert response.status == 200
    assert [request.target for request in received] == ["/administrator"]


@pytest.mark.parametrize(
    ("send", "status", "code", "reason"),
    [
        pytest.param(
            {"target": "/a/../b"}, 400, "PROXY_BAD_REQUEST", "dot_segment", id="path"
        ),
        pytest.param(
            {"target": "/admin/keys"},
            403,
            "PROXY_PATH_DENIED",
            "deny_rule",
            id="deny",
        ),
        pytest.param(
            {"target": "/user"}, 404, "PROXY_NO_ROUTE", "no_rule", id="no-route"
        ),
        pytest.param(
            {"target": "/repos/a/b/issues", "method": "DELETE"},
            405,
            "PROXY_METHOD_NOT_ALLOWED",
            "method_not_allowed",
            id="method",
        ),
        pytest.param(
            {"target": "/repos/a/b/issues?_method=PUT"},
            400,
            "PROXY_BAD_REQUEST",
            "method_override",
            id="override",
        ),
        pytest.param(
            {"target": "/x", "provider": "nope"},
            400,
            "PROXY_UNKNOWN_PROVIDER",
            "unknown_provider",
            id="unknown-provider",
        ),
        pytest.param(
            {"target": "/p/nope/x", "provider": None},
            400,
            "PROXY_UNKNOWN_PROVIDER",
            "unknown_provider",
            id="unknown-prefix",
        ),
        pytest.param(
            {"target": "/payments/1", "provider": "matrix"},
            403,
            "PROXY_SENSITIVE_DENIED",
            "sensitive_route",
            id="sensitive",
        ),
        pytest.param(
            {"target": "/readyz", "provider": None, "method": "POST"},
            404,
            "PROXY_NOT_FOUND",
            "not_management_method",
            id="management-method",
        ),
    ],
)
def test_rejection_envelope_and_log(
    stack: Stack, send: dict[str, Any], status: int, code: str, reason: str
) -> None:
    request_id = new_request_id()

    response, received = stack.send(**send, request_id=request_id)

    assert_envelope(response, status, code)
    assert response.header("x-request-id") == request_id
    assert received == []
    line = access_line(stack.outpost, request_id)
    assert line["decision"] == "deny"
    assert line["error"] == code
    assert line["reason"] == reason
    assert line["status"] == status
    # The path is checked before the caller is identified.
    expected_host = None if reason == "dot_segment" else "agent-1"
    assert line["host"] == expected_host


def test_no_secret_in_output(stack: Stack) -> None:
    stack.send("/repos/acme/app/issues")
    stack.send("/admin/keys")
    stack.send("/a/%2e%2e/b")
    stack.send("/repos/acme/app/issues", headers=[("Authorization", "Bearer x")])

    output = stack.outpost.output()

    assert TEST_SECRET not in output
    assert AGENT_PSK not in output
    assert "Traceback" not in output


def test_upstream_reply_scripted(stack: Stack) -> None:
    # Guards the fixture: a forwarded request must show the upstream body,
    # else the UPSTREAM_BODY checks above would pass for the wrong reason.
    response, received = stack.send("/repos/acme/app/issues")

    assert response.body == UPSTREAM_BODY
    assert len(received) == 1
