"""Message framing: bodiless responses, 100-continue, and ambiguous lengths."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

import pytest

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.rawhttp import read_response, request_bytes
from tests.support.streams import EarlyReplyUpstream
from tests.support.upstream import RecordedRequest, RecordingUpstream, Reply

SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}
SELECT = ("X-Provider", "github")
MiB = 1024 * 1024


def github(base_url: str, **forwarding: Any) -> dict[str, Any]:
    """Return a transparent provider with a deny list and short timeouts."""
    return {
        "name": "github",
        "base_url": base_url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {
            "mode": "transparent",
            "treat_writes_as_sensitive": False,
            "deny": ["/admin/**"],
            **forwarding,
        },
        "timeouts": {"read": 5},
    }


def bodiless_replies(request: RecordedRequest, connection: object) -> Reply:
    """Reply 200/204/304 with length headers but never a body."""
    if request.method == "HEAD":
        return Reply(headers=[("Content-Length", "5120")], body=b"")
    if request.path.endswith("/2"):
        return Reply(status=204, headers=[], body=b"")
    if request.header("if-none-match") is not None:
        return Reply(
            status=304,
            headers=[("ETag", '"abc"'), ("Content-Length", "5120")],
            body=b"",
        )
    return Reply()


def test_bodiless_answers_keep_connection_usable(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = bodiless_replies
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    with socket.create_connection(("127.0.0.1", outpost.port), timeout=5) as sock:

        def exchange(method: str, path: str, *extra: tuple[str, str]) -> Any:
            data = request_bytes(method, path, [SELECT, *extra], close=False)
            started = time.monotonic()
            sock.sendall(data)
            response = read_response(sock, head_request=method == "HEAD")
            return response, time.monotonic() - started

        head, head_time = exchange("HEAD", "/repos/acme/app/issues")
        empty, empty_time = exchange("GET", "/repos/acme/app/issues/2")
        cached, cached_time = exchange(
            "GET", "/repos/acme/app/issues", ("If-None-Match", '"abc"')
        )
        after, _ = exchange("GET", "/repos/acme/app/issues")

    assert head.status == 200
    assert head_time < 1.0
    assert head.header("content-length") == "5120"
    assert head.header("transfer-encoding") is None
    assert empty.status == 204
    assert empty_time < 1.0
    assert empty.header("transfer-encoding") is None
    assert empty.header("content-length") is None
    assert cached.status == 304
    assert cached_time < 1.0
    assert cached.header("etag") == '"abc"'
    assert cached.header("transfer-encoding") is None
    assert cached.header("content-length") == "5120"
    assert after.status == 200
    assert after.body == b'{"ok":true}'
    assert upstream.connections >= 1


def send_expecting_continue(
    port: int, target: str, body_size: int, *, wait: float = 1.0
) -> tuple[socket.socket, bytes, float]:
    """Send a head with ``Expect: 100-continue`` and wait for the first bytes.

    Returns the socket, what arrived within ``wait`` seconds (empty if
    nothing did) and the time the head was sent.
    """
    head = request_bytes(
        "POST",
        target,
        [
            SELECT,
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(body_size)),
            ("Expect", "100-continue"),
        ],
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    started = time.monotonic()
    sock.sendall(head)
    sock.settimeout(wait)
    try:
        first = sock.recv(65536)
    except TimeoutError:
        first = b""
    sock.settimeout(5)
    return sock, first, started


def test_expect_continue_relays_body(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(status=201, body=b"{}")
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)
    body = bytes(range(256)) * (MiB // 256)

    sock, first, started = send_expecting_continue(
        outpost.port, "/repos/acme/app/issues", len(body)
    )
    with sock:
        continued_at = time.monotonic()
        sock.sendall(body)
        response = read_response(sock)

    assert first.startswith(b"HTTP/1.1 100 Continue\r\n")
    assert continued_at - started < 1.0
    assert response.status == 201
    assert upstream.count == 1
    assert upstream.requests[0].body == body
    assert upstream.requests[0].header("expect") is None


def test_early_upstream_rejection_reaches_agent(start_outpost: StartOutpost) -> None:
    early = EarlyReplyUpstream(
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
        b'Content-Length: 16\r\nConnection: close\r\n\r\n{"error":"auth"}'
    )
    outpost = start_outpost([github(early.url)], env=SECRET_ENV)

    sock, first, started = send_expecting_continue(
        outpost.port, "/repos/acme/app/issues", MiB, wait=2.0
    )
    with sock:
        if first.startswith(b"HTTP/1.1 100 "):
            # The upstream may already have closed, so the upload may fail.
            with contextlib.suppress(OSError):
                sock.sendall(b"x" * MiB)
            first = first.split(b"\r\n\r\n", 1)[1]
        response = read_response(sock, buffer=first)
        elapsed = time.monotonic() - started
    early.close()

    assert response.status == 401
    assert response.body == b'{"error":"auth"}'
    assert elapsed < 2.0
    assert len(early.heads) == 1


def test_denied_upload_gets_no_continue(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    sock, first, _ = send_expecting_continue(outpost.port, "/admin/keys", MiB)
    with sock:
        response = read_response(sock, buffer=first)

    assert not first.startswith(b"HTTP/1.1 100")
    assert response.status == 403
    assert response.error_code == "PROXY_PATH_DENIED"
    assert upstream.count == 0
    assert upstream.connections == 0


SMUGGLED = b"GET /admin/keys HTTP/1.1\r\nHost: x\r\n\r\n"
AMBIGUOUS_LENGTHS = {
    "length and chunked": (
        [("Content-Length", "6"), ("Transfer-Encoding", "chunked")],
        b"0\r\n\r\n" + SMUGGLED,
    ),
    "two lengths": (
        [("Content-Length", "5"), ("Content-Length", "40")],
        b"hello" + SMUGGLED,
    ),
    "comma list": ([("Content-Length", "5, 40")], b"hello" + SMUGGLED),
    "plus sign": ([("Content-Length", "+5")], b"hello" + SMUGGLED),
    "hex": ([("Content-Length", "0x5")], b"hello" + SMUGGLED),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS_LENGTHS))
def test_ambiguous_length_never_smuggles(
    start_outpost: StartOutpost, upstream: RecordingUpstream, case: str
) -> None:
    headers, body = AMBIGUOUS_LENGTHS[case]
    outpost = start_outpost(
        [github(upstream.url, deny=[])],
        env=SECRET_ENV,
        args=["--default-provider", "github"],
    )
    data = request_bytes("POST", "/repos/acme/app/issues", headers, close=False)

    with socket.create_connection(("127.0.0.1", outpost.port), timeout=5) as sock:
        sock.sendall(data + body)
        first = read_response(sock)
        sock.settimeout(1.0)
        try:
            rest = sock.recv(65536)
        except TimeoutError:
            rest = b"<still open>"

    assert first.status in (200, 400)
    assert rest == b"", "connection stayed open after an ambiguous length"
    for request in upstream.requests:
        assert "/admin" not in request.target
        framing = {name.lower() for name, _ in request.headers} & {
            "content-length",
            "transfer-encoding",
        }
        assert len(framing) <= 1, request.headers
    if first.status == 200:
        assert case == "length and chunked"
        assert upstream.count == 1
        assert upstream.requests[0].body == b""
        assert upstream.requests[0].header("content-length") is None


def test_padded_length_is_plain_length(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    # Optional whitespace around a field value is not part of it (RFC 9110).
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    response = outpost.request(
        "POST", "/repos/acme/app/issues", [SELECT, ("Content-Length", " 5 ")], b"hello"
    )

    assert response.status == 200
    assert upstream.requests[0].body == b"hello"
    assert upstream.requests[0].header("content-length") == "5"
