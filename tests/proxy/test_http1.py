"""The HTTP/1.1 upstream client on its own, against real loopback servers.

These tests drive ``Http1Transport`` directly, so each check reads the exact
bytes on the wire and the exact error, with no proxy in between.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from outpost.config.models import Timeouts
from outpost.config.urls import parse_base_url
from outpost.proxy.http1 import MAX_RESPONSE_HEAD_BYTES, Http1Transport
from outpost.proxy.transport import Body, TransportError
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

KiB = 1024
MiB = 1024 * KiB


MakeClient = Callable[..., Http1Transport]


@pytest.fixture
async def client() -> AsyncIterator[MakeClient]:
    """Create clients with short timeouts unless given, and close them afterwards."""
    transports: list[Http1Transport] = []

    def make(base_url: str, **timeouts: float) -> Http1Transport:
        settings = {"connect": 2.0, "read": 3.0, "write": 3.0, "pool": 2.0}
        settings.update(timeouts)
        transport = Http1Transport(parse_base_url(base_url), Timeouts(**settings))
        transports.append(transport)
        return transport

    yield make
    for transport in transports:
        await transport.close()


async def fetch(
    transport: Http1Transport,
    url: str,
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: Body = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run one exchange and return its status, headers and whole body."""
    async with transport.open(method, url, headers or [], body) as response:
        parts = []
        while (chunk := await response.read_chunk()) is not None:
            parts.append(chunk)
        return response.status, response.headers, b"".join(parts)


def raw_reply(data: bytes, *, linger: float = 0.0) -> Any:
    """Return a handler that writes ``data``, waits ``linger`` s, then closes."""

    def handler(request: RecordedRequest, connection: Connection) -> None:
        connection.send(data)
        time.sleep(linger)

    return handler


def raw_reply_kept_open(data: bytes, closed_by_client: list[bool]) -> Any:
    """Return a handler that writes ``data`` and leaves closing to the client.

    It appends to ``closed_by_client`` whether the client closed the
    connection within 3 s, then closes it itself.
    """

    def handler(request: RecordedRequest, connection: Connection) -> None:
        connection.send(data)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if connection.is_closed_by_peer():
                closed_by_client.append(True)
                return
            time.sleep(0.01)
        closed_by_client.append(False)

    return handler


async def wait_for(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Poll ``condition`` on the event loop until it is true or time runs out."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def closed_port() -> int:
    """Return a loopback port that nothing listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def body_of(chunks: list[bytes]) -> AsyncIterator[bytes]:
    """Yield ``chunks`` one by one, as a streamed request body."""
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


# Keep-alive.


async def test_keep_alive_reuses_one_connection(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    transport = client(upstream.url)

    for _ in range(3):
        status, _, body = await fetch(transport, upstream.url + "/v1/models")
        assert status == 200
        assert body == b'{"ok":true}'

    assert upstream.count == 3
    assert upstream.connections == 1


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_keep_alive_not_kept(
    client: MakeClient, upstream: RecordingUpstream, head: bytes
) -> None:
    closed_by_client: list[bool] = []
    upstream.handler = raw_reply_kept_open(head + b"ok", closed_by_client)
    transport = client(upstream.url)

    status, _, body = await fetch(transport, upstream.url + "/a")
    await wait_for(lambda: closed_by_client)

    assert status == 200
    assert body == b"ok"
    assert closed_by_client == [True]


# Response heads.


async def test_head_and_large_body_in_one_send(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    payload = bytes(range(256)) * (300 * KiB // 256)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload)
    upstream.handler = raw_reply(head + payload, linger=0.5)
    transport = client(upstream.url)

    status, _, body = await fetch(transport, upstream.url + "/big")

    assert status == 200
    assert len(body) == len(payload)
    assert body == payload


def many_headers(total: int) -> bytes:
    """Return header lines of about ``total`` bytes, 100 bytes per line."""
    line_count = total // 100 + 1
    return b"".join(
        b"X-Filler-%05d: %s\r\n" % (i, b"v" * 81) for i in range(line_count)
    )


async def test_head_too_large_sent_slowly(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    lines = many_headers(MAX_RESPONSE_HEAD_BYTES + 16 * KiB)

    def handler(request: RecordedRequest, connection: Connection) -> None:
        connection.send(b"HTTP/1.1 200 OK\r\n")
        for start in range(0, len(lines), 8 * KiB):
            connection.send(lines[start : start + 8 * KiB])
            time.sleep(0.02)
        connection.send(b"Content-Length: 0\r\n\r\n")
        time.sleep(0.5)

    upstream.handler = handler
    transport = client(upstream.url)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/")

    assert caught.value.kind == "response head too large"
    assert caught.value.phase == "headers"


async def test_head_too_large_sent_at_once(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    lines = many_headers(2 * MAX_RESPONSE_HEAD_BYTES)
    head = b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 0\r\n\r\n"
    upstream.handler = raw_reply(head, linger=0.5)
    transport = client(upstream.url)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/")

    assert caught.value.kind == "response head too large"


async def test_head_too_large_ending_in_one_read(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    # The first part stays below the limit and the head's end arrives in
    # one read, which takes the whole head past the limit.
    lines = many_headers(MAX_RESPONSE_HEAD_BYTES + 8 * KiB)
    first = MAX_RESPONSE_HEAD_BYTES - 8 * KiB

    def handler(request: RecordedRequest, connection: Connection) -> None:
        connection.send(b"HTTP/1.1 200 OK\r\n" + lines[:first])
        time.sleep(0.2)
        connection.send(lines[first:] + b"Content-Length: 0\r\n\r\n")
        time.sleep(0.5)

    upstream.handler = handler
    transport = client(upstream.url)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/")

    assert caught.value.kind == "response head too large"


async def test_head_below_limit_sent_slowly(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    lines = many_headers(MAX_RESPONSE_HEAD_BYTES - 8 * KiB)

    def handler(request: RecordedRequest, connection: Connection) -> None:
        connection.send(b"HTTP/1.1 200 OK\r\n")
        for start in range(0, len(lines), 8 * KiB):
            connection.send(lines[start : start + 8 * KiB])
            time.sleep(0.02)
        connection.send(b"Content-Length: 2\r\n\r\nok")
        time.sleep(0.5)

    upstream.handler = handler
    transport = client(upstream.url)

    status, headers, body = await fetch(transport, upstream.url + "/")

    assert status == 200
    assert len(headers) == lines.count(b"\r\n") + 1
    assert body == b"ok"


async def test_interim_responses_skipped(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 4\r\n\r\ndone"
    )
    transport = client(upstream.url)

    status, headers, body = await fetch(transport, upstream.url + "/")

    assert status == 200
    assert headers == [("x-final", "yes"), ("content-length", "4")]
    assert body == b"done"


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "invalid response status 101",
        ),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "invalid response status 101"),
        (b"HTTP/1.1 600 X\r\nContent-Length: 0\r\n\r\n", "invalid response status 600"),
        (b"HTTP/1.1 999 X\r\nContent-Length: 0\r\n\r\n", "invalid response status 999"),
        (b"HTTP/1.1 199 X\r\n\r\nHTTP/1.1 099 X\r\n\r\n", "invalid response status 99"),
    ],
    ids=["101-upgrade", "101-bare", "600", "999", "below-100"],
)
async def test_status_rejected(
    client: MakeClient, upstream: RecordingUpstream, head: bytes, kind: str
) -> None:
    upstream.handler = raw_reply(head, linger=0.5)
    transport = client(upstream.url)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/")

    assert caught.value.kind == kind
    assert caught.value.phase == "headers"


async def test_non_ascii_header_bytes_kept(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"X-Utf8: caf\xc3\xa9 \xe2\x9c\x93\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    transport = client(upstream.url)

    _, headers, _ = await fetch(transport, upstream.url + "/")
    values = dict(headers)

    assert values["x-latin"].encode("latin-1") == b"caf\xe9"
    assert values["x-utf8"].encode("latin-1") == b"caf\xc3\xa9 \xe2\x9c\x93"


# Response bodies.


async def test_head_request_ignores_length(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(
        headers=[("Content-Length", "10")]
    )
    transport = client(upstream.url, read=2.0)

    status, headers, body = await fetch(transport, upstream.url + "/", method="HEAD")

    assert status == 200
    assert ("content-length", "10") in headers
    assert body == b""


async def test_close_delimited_body_read_whole(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    payload = b"x" * (200 * KiB) + b"end"
    upstream.handler = raw_reply(b"HTTP/1.1 200 OK\r\n\r\n" + payload)
    transport = client(upstream.url)

    status, _, body = await fetch(transport, upstream.url + "/")

    assert status == 200
    assert body == payload


async def test_extra_response_does_not_replace_first(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    # A second response in the same bytes matches no request of Outpost's.
    # The first is returned whole and the connection is not reused.
    closed_by_client: list[bool] = []
    upstream.handler = raw_reply_kept_open(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nbad",
        closed_by_client,
    )
    transport = client(upstream.url)

    status, headers, body = await fetch(transport, upstream.url + "/")
    await wait_for(lambda: closed_by_client)

    assert status == 200
    assert ("content-length", "2") in headers
    assert body == b"ok"
    assert closed_by_client == [True]


async def test_short_body_is_closed_error(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b"
    )
    transport = client(upstream.url)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/")

    assert caught.value.kind == "connection closed by the upstream"
    assert caught.value.phase == "body"


async def test_chunked_body_decoded(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    transport = client(upstream.url)

    status, _, body = await fetch(transport, upstream.url + "/")

    assert status == 200
    assert body == b"hello world"


async def test_bad_chunk_size_invalid(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\nzz\r\noops\r\n0\r\n\r\n",
        linger=0.5,
    )
    transport = client(upstream.url)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/")

    assert caught.value.kind == "invalid HTTP response"
    assert caught.value.phase == "body"


# Request framing.


def request_body(raw: bytes) -> bytes:
    """Return what follows the head in one request's raw bytes."""
    return raw.split(b"\r\n\r\n", 1)[1]


async def test_bytes_body_gets_length(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(close=True)
    transport = client(upstream.url)

    await fetch(transport, upstream.url + "/p", method="POST", body=b"hello")
    await wait_for(lambda: upstream.raw)

    head = upstream.requests[0].raw_head
    assert b"\r\nContent-Length: 5" in head
    assert b"Transfer-Encoding" not in head
    assert request_body(upstream.raw[0]) == b"hello"


async def test_stream_body_sent_chunked(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(close=True)
    transport = client(upstream.url)
    chunks = [b"abc", b"", b"d" * 20, b"\r\n0\r\n\r\n"]

    await fetch(transport, upstream.url + "/p", method="POST", body=body_of(chunks))
    await wait_for(lambda: upstream.raw)

    head = upstream.requests[0].raw_head
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    assert upstream.requests[0].body == b"".join(chunks)
    assert request_body(upstream.raw[0]) == (
        b"3\r\nabc\r\n14\r\n" + b"d" * 20 + b"\r\n7\r\n\r\n0\r\n\r\n\r\n0\r\n\r\n"
    )


async def test_stream_body_with_length_raw(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(close=True)
    transport = client(upstream.url)
    chunks = [b"abc", b"defg", b"hij"]

    await fetch(
        transport,
        upstream.url + "/p",
        method="PUT",
        headers=[("content-length", "10")],
        body=body_of(chunks),
    )
    await wait_for(lambda: upstream.raw)

    head = upstream.requests[0].raw_head
    assert head.count(b"Content-Length") == 1
    assert b"\r\nContent-Length: 10" in head
    assert b"Transfer-Encoding" not in head
    assert request_body(upstream.raw[0]) == b"abcdefghij"


async def test_host_and_names_exact(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    transport = client(upstream.url)
    headers = [
        ("host", "evil.example"),
        ("x-title", "Agent"),
        ("authorization", "Bearer t"),
        ("x-api-key", "k"),
    ]

    await fetch(transport, upstream.url + "/v1/models?q=1", headers=headers)

    request = upstream.requests[0]
    assert request.raw_head.split(b"\r\n") == [
        b"GET /v1/models?q=1 HTTP/1.1",
        b"Host: 127.0.0.1:%d" % upstream.port,
        b"X-Title: Agent",
        b"Authorization: Bearer t",
        b"X-Api-Key: k",
    ]


# Rejected requests: nothing reaches the upstream.


@pytest.mark.parametrize(
    "headers",
    [
        [("x-a", "v\r\nX-Injected: 1")],
        [("x-a", "v\nX-Injected: 1")],
        [("x-a", "v\rX-Injected: 1")],
        [("x-a", "v\0")],
        [("x-a\r\nx-injected", "1")],
    ],
    ids=["crlf", "lf", "cr", "nul", "name-crlf"],
)
async def test_header_injection_rejected(
    client: MakeClient, upstream: RecordingUpstream, headers: list[tuple[str, str]]
) -> None:
    transport = client(upstream.url)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/", headers=headers)
    await asyncio.sleep(0.1)

    assert caught.value.phase == "request"
    assert upstream.connections == 0


@pytest.mark.parametrize(
    "path",
    [
        "/a\r\nX-Injected: 1",
        "/a\nb",
        "/a\rb",
        "/a\0b",
        "/a HTTP/1.1\r\nX: y",
        "/a b",
    ],
    ids=["crlf", "lf", "cr", "nul", "request-line", "space"],
)
async def test_target_injection_rejected(
    client: MakeClient, upstream: RecordingUpstream, path: str
) -> None:
    transport = client(upstream.url)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + path)
    await asyncio.sleep(0.1)

    assert caught.value.phase == "request"
    assert upstream.connections == 0


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.2:{port}/",
        "http://localhost:{port}/",
        "http://127.0.0.1:{other}/",
        "https://127.0.0.1:{port}/",
        "http://127.0.0.1:{port}@127.0.0.2:{port}/",
        "http://127.0.0.1:{port}@evil/",
        "http://127.0.0.1:{port}X",
        "http://127.0.0.1:{port}0/",
        "http://127.0.0.1:{port}",
        "http://127.0.0.1:{port}?q=1",
        "/relative",
    ],
)
async def test_url_outside_origin_rejected(
    client: MakeClient,
    upstream: RecordingUpstream,
    foreign_host: RecordingUpstream,
    template: str,
) -> None:
    transport = client(upstream.url)
    url = template.format(port=upstream.port, other=foreign_host.port)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, url)
    await asyncio.sleep(0.1)

    assert caught.value.kind == "URL outside the provider's origin"
    assert upstream.connections == 0
    assert foreign_host.connections == 0


# Stale and broken connections.


@pytest.mark.parametrize("pause", [0.0, 0.2])
async def test_upstream_closes_idle_connection(
    client: MakeClient, upstream: RecordingUpstream, pause: float
) -> None:
    upstream.handler = raw_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    transport = client(upstream.url)

    first = await fetch(transport, upstream.url + "/1")
    await asyncio.sleep(pause)
    second = await fetch(transport, upstream.url + "/2")

    assert first[2] == b"ok"
    assert second[2] == b"ok"
    assert upstream.connections == 2


def drop_second_request_once() -> Any:
    """Return a handler that closes one reused connection without a response.

    The second request on the first connection gets no byte at all. Every
    other request gets the default reply.
    """
    sockets: list[socket.socket] = []
    counts: dict[int, int] = {}
    dropped: list[bool] = []

    def handler(request: RecordedRequest, connection: Connection) -> Reply | None:
        sock = connection.sock
        if sock not in sockets:
            sockets.append(sock)
        index = sockets.index(sock)
        counts[index] = counts.get(index, 0) + 1
        if index == 0 and counts[index] == 2 and not dropped:
            dropped.append(True)
            return None
        return Reply()

    return handler


async def test_silent_close_retries_get(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = drop_second_request_once()
    transport = client(upstream.url)

    first = await fetch(transport, upstream.url + "/1")
    second = await fetch(transport, upstream.url + "/2")

    assert first[0] == 200
    assert second[0] == 200
    assert [request.path for request in upstream.requests] == ["/1", "/2", "/2"]
    assert upstream.connections == 2


async def test_silent_close_fails_post(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = drop_second_request_once()
    transport = client(upstream.url)

    await fetch(transport, upstream.url + "/1", method="POST", body=b"{}")
    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/2", method="POST", body=b"{}")

    assert caught.value.kind == "connection closed by the upstream"
    assert [request.path for request in upstream.requests] == ["/1", "/2"]
    assert upstream.connections == 1


# Timeouts and connection failures.


async def test_silent_upstream_is_read_timeout(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(b"", linger=2.0)
    transport = client(upstream.url, read=0.3)

    with pytest.raises(TransportError) as caught:
        await fetch(transport, upstream.url + "/")

    assert caught.value.kind == "read timeout"
    assert caught.value.phase == "headers"


async def test_stalled_body_is_read_timeout(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = raw_reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", linger=2.0
    )
    transport = client(upstream.url, read=0.3)

    async with transport.open("GET", upstream.url + "/", [], None) as response:
        first = await response.read_chunk()
        with pytest.raises(TransportError) as caught:
            await response.read_chunk()

    assert first == b"abc"
    assert caught.value.kind == "read timeout"
    assert caught.value.phase == "body"


async def test_closed_port_is_refused(client: MakeClient) -> None:
    port = closed_port()
    transport = client(f"http://127.0.0.1:{port}")

    with pytest.raises(TransportError) as caught:
        await fetch(transport, f"http://127.0.0.1:{port}/")

    assert caught.value.kind == "connection refused or unreachable"
    assert caught.value.phase == "request"


# Backpressure.


class FloodServer:
    """A raw server that sends ``size`` body bytes for one request, fast as it can.

    ``sent`` counts the bytes the kernel accepted from ``send``, so it stalls
    once the client stops reading and the socket buffers fill.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Return the base URL of this server."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting connections."""
        self._server.close()

    def _serve(self) -> None:
        try:
            sock, _ = self._server.accept()
        except OSError:
            return
        # A fixed send buffer keeps the kernel's share of ``sent`` small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * KiB)
        with sock:
            received = b""
            while b"\r\n\r\n" not in received:
                data = sock.recv(65536)
                if not data:
                    return
                received += data
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size)
            block = b"z" * (256 * KiB)
            remaining = self.size
            try:
                while remaining:
                    count = sock.send(block[: min(remaining, len(block))])
                    remaining -= count
                    self.sent += count
            except OSError:
                return


@pytest.fixture
def flood() -> Iterator[FloodServer]:
    """A raw server that sends 50 MiB at once."""
    server = FloodServer(50 * MiB)
    yield server
    server.close()


async def test_slow_reader_pauses_upstream(
    client: MakeClient, flood: FloodServer
) -> None:
    transport = client(flood.url)

    async with transport.open("GET", flood.url + "/", [], None) as response:
        await asyncio.sleep(1.0)
        sent_while_idle = flood.sent
        total = 0
        while (chunk := await response.read_chunk()) is not None:
            total += len(chunk)

    assert sent_while_idle < 8 * MiB
    assert total == 50 * MiB


# Leaving an exchange early.


async def test_early_exit_closes_connection(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(chunks=[(0.5, b"late")])
    transport = client(upstream.url)

    async with transport.open("GET", upstream.url + "/1", [], None) as response:
        assert response.status == 200
    upstream.handler = lambda request, connection: Reply()
    status, _, _ = await fetch(transport, upstream.url + "/2")

    assert status == 200
    assert upstream.connections == 2


async def fail_inside_exchange(transport: Http1Transport, url: str) -> None:
    """Read the whole body, then raise inside the ``async with`` block."""
    async with transport.open("GET", url, [], None) as response:
        while await response.read_chunk() is not None:
            pass
        raise RuntimeError("agent went away")


async def test_error_in_block_closes_connection(
    client: MakeClient, upstream: RecordingUpstream
) -> None:
    transport = client(upstream.url)

    with pytest.raises(RuntimeError):
        await fail_inside_exchange(transport, upstream.url + "/1")
    status, _, _ = await fetch(transport, upstream.url + "/2")

    assert status == 200
    assert upstream.connections == 2
