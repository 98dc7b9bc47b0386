"""Property: whatever target an agent writes, the upstream gets the checked path.

Targets are drawn from a grammar of path segments that past bypasses used
(dots, encoded dots and separators, ';', empty segments, raw Unicode, escapes
of random bytes) and written byte for byte to one long-lived Outpost process.
Each must be rejected with a 400 before the upstream receives anything, or reach
the upstream with exactly the canonical path and the query unchanged.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from outpost.errors import BadRequestError
from outpost.policy.canonical import canonicalize_path
from tests.conftest import TEST_SECRET
from tests.support.outpost import OutpostServer
from tests.support.rawhttp import request_bytes, send_raw
from tests.support.upstream import RecordingUpstream

HIGH_LIMITS = {"default": [{"capacity": 100000, "window_ms": 1000}]}
PROVIDER_PARAMETERS = {"plain": False, "params": True}

TRICKY_SEGMENTS = [
    ".",
    "..",
    "...",
    "%2e",
    "%2E",
    "%2e%2e",
    ".%2E",
    "%2e.",
    "..;",
    ".;x",
    "%2F",
    "%2f",
    "%5C",
    "%5c",
    "\\",
    ";",
    ";x=1",
    "a;b",
    "",
    "~",
    "!$&'()*+,=:@",
    "%",
    "%4",
    "%zz",
    "%%41",
    "%25",
    "%252e",
    "%3B",
    "%3F",
    "%23",
    "%00",
    "%0d%0a",
    "%7F",
    "%C0%AE",
    "{a}",
    "|",
    "^",
    '"',
    "p",
    "healthz",
]


def hex_escapes(upper: bool) -> st.SearchStrategy[str]:
    """Percent-escapes of one to three random bytes."""
    template = "%{:02X}" if upper else "%{:02x}"
    return st.binary(min_size=1, max_size=3).map(
        lambda data: "".join(template.format(byte) for byte in data)
    )


SEGMENT = st.one_of(
    st.text(string.ascii_letters + string.digits + "-._~", min_size=1, max_size=6),
    st.sampled_from(TRICKY_SEGMENTS),
    st.text(
        st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF), min_size=1, max_size=3
    ),
    hex_escapes(upper=True),
    hex_escapes(upper=False),
)
PATH = st.lists(SEGMENT, max_size=6).map(lambda segments: "/" + "/".join(segments))
# No '_' or '-', so that no parameter can name a method override, and no
# "'", which the upstream client encodes (see test_query_quote_sent_percent_encoded).
QUERY = st.one_of(
    st.just(""),
    st.text(string.ascii_letters + string.digits + "=&+;,/?:@!$()*~.%é€", max_size=16),
)


@dataclass
class Stack:
    """The module's Outpost process and its upstream."""

    outpost: OutpostServer
    upstream: RecordingUpstream


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Start Outpost with transparent providers ``plain`` and ``params``."""
    upstream = RecordingUpstream()
    providers = [
        {
            "name": name,
            "base_url": upstream.url,
            "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
            "forwarding": {
                "treat_writes_as_sensitive": False,
                "allow_path_parameters": parameters,
                "rate_limits": HIGH_LIMITS,
            },
        }
        for name, parameters in PROVIDER_PARAMETERS.items()
    ]
    outpost = OutpostServer(
        tmp_path_factory.mktemp("outpost"),
        providers,
        env={"OUTPOST_TEST_SECRET": TEST_SECRET},
    ).start()
    yield Stack(outpost, upstream)
    outpost.stop()
    upstream.close()


def expected_path(target: bytes, provider: str, by_prefix: bool) -> str | None:
    """Return the path the upstream must receive, or None for a 400."""
    parameters = PROVIDER_PARAMETERS[provider]
    try:
        path = canonicalize_path(target, allow_path_parameters=parameters)
    except BadRequestError:
        return None
    if not by_prefix:
        return path
    rest = path[len(f"/p/{provider}") :]
    return rest or "/"


def escape_non_ascii(query: bytes) -> str:
    """Return ``query`` with every byte above 0x7F percent-encoded."""
    return "".join(chr(byte) if byte < 0x80 else f"%{byte:02X}" for byte in query)


@settings(max_examples=150, deadline=None)
@given(
    path=PATH,
    query=QUERY,
    provider=st.sampled_from(sorted(PROVIDER_PARAMETERS)),
    by_prefix=st.booleans(),
)
def test_upstream_path_is_canonical(
    stack: Stack, path: str, query: str, provider: str, by_prefix: bool
) -> None:
    target = (f"/p/{provider}" if by_prefix else "") + path
    raw_target = target.encode()
    headers = [] if by_prefix else [("X-Provider", provider)]
    data = request_bytes("GET", "TARGET", headers)
    line_target = raw_target + (b"?" + query.encode() if query else b"")
    before = stack.upstream.count

    response = send_raw(stack.outpost.port, data.replace(b"TARGET", line_target, 1))

    received = stack.upstream.requests[before:]
    expected = expected_path(raw_target, provider, by_prefix)
    event(f"status {response.status}")
    if response.status == 400:
        assert received == []
        return
    assert expected is not None, f"{raw_target!r} answered {response.status}"
    assert response.status == 200
    assert len(received) == 1
    assert received[0].path == expected
    assert received[0].query == escape_non_ascii(query.encode())
    segments = expected.split("/")[1:]
    assert all(segment not in (".", "..") for segment in segments)
    assert all(segments[:-1])


def test_query_quote_sent_unchanged(stack: Stack) -> None:
    data = request_bytes("GET", "/p/plain/x?q='a'&b=1", [])

    response = send_raw(stack.outpost.port, data)

    assert response.status == 200
    assert stack.upstream.requests[-1].query == "q='a'&b=1"


def test_non_ascii_query_bytes_rejected(stack: Stack) -> None:
    # A request target is ASCII (RFC 9112 section 3.2). Raw bytes above 0x7F
    # get a 400 naming the problem instead of a guess at their encoding.
    before = len(stack.upstream.requests)
    data = request_bytes("GET", "/p/plain/x?q=café", [])

    response = send_raw(stack.outpost.port, data)

    assert response.status == 400
    assert response.error_code == "PROXY_BAD_REQUEST"
    assert b"url query" in response.body
    assert len(stack.upstream.requests) == before
