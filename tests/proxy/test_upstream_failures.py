"""Upstream failures: named correctly, and never passed off as a whole response."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream

SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}


def github(base_url: str, **timeouts: float) -> dict[str, Any]:
    """Return a transparent bearer provider with the given timeouts."""
    return {
        "name": "github",
        "base_url": base_url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "timeouts": timeouts,
    }


def raw_reply(data: bytes, *, linger: float = 0.0) -> Any:
    """Return a handler that writes ``data`` and then closes the connection."""

    def handler(request: RecordedRequest, connection: Connection) -> None:
        connection.send(data)
        time.sleep(linger)

    return handler


def error_kind(body: dict[str, Any]) -> str:
    """Return ``metadata.kind`` of an error envelope."""
    kind: str = body["error"]["metadata"]["kind"]
    return kind


def test_slow_answer_is_read_timeout(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(b"", linger=2.0)
    outpost = start_outpost([github(upstream.url, read=0.5)], env=SECRET_ENV)

    response = outpost.get("/p/github/slow")

    assert response.status == 504
    assert response.error_code == "PROXY_UPSTREAM_TIMEOUT"
    assert error_kind(response.json()) == "read timeout"


@pytest.fixture
def unaccepting_port() -> Iterator[int]:
    """A port whose listen queue is full, so new connections hang in SYN."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port: int = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    server.close()


def test_unanswered_connect_is_connect_timeout(
    start_outpost: StartOutpost, unaccepting_port: int
) -> None:
    provider = github(f"http://127.0.0.1:{unaccepting_port}", connect=0.5, read=5)
    outpost = start_outpost([provider], env=SECRET_ENV)

    started = time.monotonic()
    response = outpost.get("/p/github/x")

    assert response.status == 504
    assert error_kind(response.json()) == "connect timeout"
    assert time.monotonic() - started < 3.0


def test_upstream_closing_without_answer(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(b"")
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.status == 502
    assert response.error_code == "PROXY_UPSTREAM_ERROR"
    assert error_kind(response.json()) == "connection closed by the upstream"


def test_invalid_upstream_response(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(b"NOT HTTP AT ALL\r\n\r\n")
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.status == 502
    assert error_kind(response.json()) == "invalid HTTP response"


def test_upstream_length_and_chunked_refused(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    # Two framings in one response are how responses are split. RFC 9112
    # section 6.3 recommends handling such a message as an error.
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.status == 502
    assert error_kind(response.json()) == "invalid HTTP response"
    assert b"hello" not in response.body


def read_all(port: int, target: str) -> bytes:
    """Send a GET and return every byte until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_short_upstream_body_not_completed(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", linger=0.1
    )
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    data = read_all(outpost.port, "/p/github/x")

    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length: 100" in head.lower()
    assert body == b"partial"
    lines = [line for line in outpost.access_lines() if line["path"] == "/x"]
    assert lines[-1]["error"] == "PROXY_UPSTREAM_ERROR"


def test_cut_chunked_body_not_terminated(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        linger=0.1,
    )
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    data = read_all(outpost.port, "/p/github/x")

    assert b"hello" in data
    assert not data.endswith(b"0\r\n\r\n"), "a cut body looked complete"


REPEATED_LENGTHS = {
    "list": b"Content-Length: 2, 2\r\n",
    "two lines": b"Content-Length: 2\r\nContent-Length: 2\r\n",
}


@pytest.mark.parametrize("case", list(REPEATED_LENGTHS))
def test_repeated_upstream_length_refused(
    start_outpost: StartOutpost, upstream: RecordingUpstream, case: str
) -> None:
    # RFC 9110 section 8.6 lets a recipient reject a repeated length even
    # when the values agree; llhttp does, like for differing values.
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\n" + REPEATED_LENGTHS[case] + b"\r\nok", linger=0.1
    )
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.status == 502
    assert error_kind(response.json()) == "invalid HTTP response"


@pytest.mark.parametrize(
    "lengths",
    [b"Content-Length: 2, 3\r\n", b"Content-Length: 2\r\nContent-Length: 3\r\n"],
)
def test_conflicting_upstream_lengths_refused(
    start_outpost: StartOutpost, upstream: RecordingUpstream, lengths: bytes
) -> None:
    upstream.handler = raw_reply(b"HTTP/1.1 200 OK\r\n" + lengths + b"\r\nok")
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.status == 502
    assert error_kind(response.json()) == "invalid HTTP response"


def test_non_chunked_transfer_coding_refused(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    # Only chunked is removed on the way, so gzip would reach the agent as
    # compressed bytes that no header declares.
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.status == 502
    assert response.error_code == "PROXY_UPSTREAM_ERROR"
    assert error_kind(response.json()) == "unsupported transfer coding"


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n", 101),
        (b"HTTP/1.1 600 Unknown\r\nContent-Length: 2\r\n", 600),
    ],
    ids=["unrequested-upgrade", "above-599"],
)
def test_invalid_upstream_status_refused(
    start_outpost: StartOutpost, upstream: RecordingUpstream, head: bytes, status: int
) -> None:
    upstream.handler = raw_reply(head + b"Connection: close\r\n\r\nok")
    outpost = start_outpost([github(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/x")

    assert response.status == 502
    assert response.error_code == "PROXY_UPSTREAM_ERROR"
    assert error_kind(response.json()) == f"invalid response status {status}"
