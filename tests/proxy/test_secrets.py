"""No secret appears in any output line or error body, whatever goes wrong.

One Outpost process serves bearer, query-key and Basic providers to a host
with a pre-shared key, at DEBUG level, through a workload of successes and
every kind of failure. Then every byte it printed and every byte it sent
back is searched for each secret in the forms a leak would take: raw,
percent-encoded, and base64 of ``user:password`` for Basic.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.outpost import OutpostServer, free_port
from tests.support.rawhttp import RawResponse
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

QUERY_SECRET = "qk/TEST+secret=&9f3a ok"
BASIC_USER = "svc-user"
BASIC_PASSWORD = "pw:TEST/secret+77"
AGENT_PSK = "psk-test-agent-1"
WRONG_PSK = "psk-test-agent-1-WRONG-0123456789"
ENV = {
    "OUTPOST_TEST_SECRET": TEST_SECRET,
    "OUTPOST_QUERY_SECRET": QUERY_SECRET,
    "OUTPOST_BASIC_USER": BASIC_USER,
    "OUTPOST_BASIC_PASSWORD": BASIC_PASSWORD,
    "AGENT_PSK": AGENT_PSK,
}
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


def secret_forms() -> dict[str, bytes]:
    """Return every form in which a secret could leak, by description."""
    forms: dict[str, str] = {}
    for name, value in {
        "bearer": TEST_SECRET,
        "query key": QUERY_SECRET,
        "basic password": BASIC_PASSWORD,
        "host key": AGENT_PSK,
    }.items():
        forms[f"{name} raw"] = value
        forms[f"{name} percent-encoded"] = quote(value, safe="")
        forms[f"{name} form-encoded"] = quote_plus(value)
    pair = f"{BASIC_USER}:{BASIC_PASSWORD}".encode()
    forms["basic base64"] = base64.b64encode(pair).decode()
    forms["wrong host key"] = WRONG_PSK
    return {name: value.encode() for name, value in forms.items()}


def misbehave(request: RecordedRequest, connection: Connection) -> Reply | None:
    """Fail in the way the request path names, or reply 200."""
    if request.path.endswith("/fail500"):
        return Reply(status=500, body=b'{"error":"bad url"}')
    if request.path.endswith("/slow"):
        time.sleep(1.5)
        return Reply()
    if request.path.endswith("/truncated"):
        connection.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        return None
    return Reply()


def providers(upstream: RecordingUpstream) -> list[dict[str, object]]:
    """Return one provider per auth scheme, plus broken and strict variants."""
    forwarding = {
        "mode": "transparent",
        "treat_writes_as_sensitive": False,
        "deny": ["/admin/**"],
    }
    query_auth = {
        "type": "api_key_query",
        "env": "OUTPOST_QUERY_SECRET",
        "param": "key",
    }
    return [
        {
            "name": "bearer",
            "base_url": upstream.url,
            "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
            "forwarding": forwarding,
        },
        {
            "name": "keyquery",
            "base_url": upstream.url,
            "auth": query_auth,
            "forwarding": forwarding,
            "timeouts": {"read": 0.5},
        },
        {
            "name": "keyquery-down",
            "base_url": f"http://127.0.0.1:{free_port()}",
            "auth": query_auth,
        },
        {
            "name": "basic",
            "base_url": upstream.url,
            "auth": {
                "type": "basic_auth",
                "username_env": "OUTPOST_BASIC_USER",
                "password_env": "OUTPOST_BASIC_PASSWORD",
            },
            "forwarding": {"mode": "allowlist", "allow": [{"path": "/repos/**"}]},
        },
        {
            "name": "unset",
            "base_url": upstream.url,
            "auth": {"type": "bearer_static", "env": "OUTPOST_UNSET_SECRET"},
        },
    ]


WORKLOAD: list[tuple[str, str, str, int]] = [
    # (description, provider, target, expected status)
    ("bearer ok", "bearer", "/repos/a/b?state=open", 200),
    ("query ok", "keyquery", "/repos/a/b/issues?state=open&key=agent-key", 200),
    ("basic ok", "basic", "/repos/a/b", 200),
    ("path denied", "keyquery", "/admin/keys?state=open", 403),
    ("no route", "basic", "/user/keys", 404),
    ("unknown provider", "nope", "/repos/a/b", 400),
    ("credential unset", "unset", "/repos/a/b", 503),
    ("upstream 500", "keyquery", "/repos/a/b/fail500?state=open", 500),
    ("upstream 500 bearer", "bearer", "/repos/a/b/fail500", 500),
    ("connect failure", "keyquery-down", "/repos/a/b?state=open", 502),
    ("read timeout", "keyquery", "/repos/a/b/slow?state=open", 504),
    ("basic 500", "basic", "/repos/a/b/fail500", 500),
]


@pytest.fixture
def outpost(start_outpost: StartOutpost, upstream: RecordingUpstream) -> OutpostServer:
    """Outpost at DEBUG level with every provider of :func:`providers`."""
    upstream.handler = misbehave
    return start_outpost(
        providers(upstream),
        hosts=HOSTS,
        env=ENV,
        args=["--log-level", "DEBUG", "--allow-missing-credentials"],
    )


def run_workload(outpost: OutpostServer) -> Iterator[tuple[str, RawResponse]]:
    """Send every request of the mixed workload; yield each response."""
    for description, provider, target, status in WORKLOAD:
        response = outpost.get(
            target, [("X-Provider", provider), ("X-Outpost-Auth", AGENT_PSK)]
        )
        assert response.status == status, (description, response.body)
        yield description, response
    wrong = outpost.get(
        "/repos/a/b", [("X-Provider", "bearer"), ("X-Outpost-Auth", WRONG_PSK)]
    )
    assert wrong.status == 401
    yield "wrong host key", wrong
    missing = outpost.get("/repos/a/b", [("X-Provider", "bearer")])
    assert missing.status == 401
    yield "missing host key", missing
    try:
        broken = outpost.get(
            "/repos/a/b/truncated?state=open",
            [("X-Provider", "keyquery"), ("X-Outpost-Auth", AGENT_PSK)],
        )
        yield "truncated upstream body", broken
    except ConnectionError:
        pass


def test_no_secret_in_output_or_bodies(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    responses = list(run_workload(outpost))
    outpost.stop()
    output = outpost.output().encode()

    assert output, "Outpost printed nothing, so the search proves nothing"
    for form, value in secret_forms().items():
        assert value not in output, f"{form} found in Outpost's output"
        for description, response in responses:
            assert value not in response.raw + response.body, (form, description)


def test_secrets_reach_upstream_encoded(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    # The search above is only meaningful if these forms are the real ones.
    list(run_workload(outpost))

    by_path = {request.path: request for request in upstream.requests}
    query = by_path["/repos/a/b/issues"].query
    assert query == f"state=open&key={quote(QUERY_SECRET, safe='')}"
    basic = by_path["/repos/a/b"].header_values("authorization")
    assert f"Basic {secret_forms()['basic base64'].decode()}" in basic
    assert b"agent-key" not in b"".join(r.raw_head for r in upstream.requests)


def test_rejected_host_key_not_echoed(outpost: OutpostServer) -> None:
    response = outpost.get(
        "/repos/a/b", [("X-Provider", "bearer"), ("X-Outpost-Auth", WRONG_PSK)]
    )

    assert response.status == 401
    assert response.error_code == "PROXY_AUTH_REQUIRED"
    assert WRONG_PSK[:-4].encode() not in response.raw + response.body
    assert WRONG_PSK.encode() not in outpost.output().encode()


def test_error_bodies_name_no_upstream_url(outpost: OutpostServer) -> None:
    for provider, target in [
        ("keyquery-down", "/repos/a/b?state=open"),
        ("keyquery", "/repos/a/b/slow?state=open"),
    ]:
        response = outpost.get(
            target, [("X-Provider", provider), ("X-Outpost-Auth", AGENT_PSK)]
        )

        assert response.status in (502, 504)
        assert b"http://" not in response.body, response.body
        assert b"127.0.0.1" not in response.body, response.body
        assert b"key=" not in response.body, response.body


@pytest.mark.parametrize("method", ["TRACE", "TRACK", "trace"])
def test_echo_methods_never_forwarded(
    outpost: OutpostServer, upstream: RecordingUpstream, method: str
) -> None:
    # An upstream responds to TRACE with the request it received, injected
    # credential included, which would hand the secret to the agent.
    before = upstream.count

    response = outpost.request(
        method, "/repos/a/b", [("X-Provider", "bearer"), ("X-Outpost-Auth", AGENT_PSK)]
    )

    assert upstream.count == before
    assert TEST_SECRET.encode() not in response.raw + response.body
    # The HTTP parser already rejects TRACK and lower-case methods with 400.
    expected = 405 if method == "TRACE" else 400
    assert response.status == expected
