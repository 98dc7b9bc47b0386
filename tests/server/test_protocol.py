"""The HTTP/1.1 server protocol on loopback sockets, and the processes around it.

The first part runs :class:`HttpServerProtocol` in the test's own event loop,
with small limits, in front of a small ASGI application, and drives it with
exact request bytes. The second part starts real ``outpost serve`` processes
for behaviour that depends on the worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from outpost.server.protocol import HttpServerProtocol, ServerLimits
from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.outpost import OutpostServer, child_pids, listening_inodes
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

Message = dict[str, Any]

LIMITS = ServerLimits(
    max_head_bytes=4096, head_timeout=0.3, idle_timeout=0.3, body_timeout=0.3
)
# Upper bound in seconds for any single wait in these tests. Reaching it fails
# the test.
WAIT = 5.0
BIG_RESPONSE_BYTES = 64 * 1024 * 1024
BIG_CHUNK_BYTES = 64 * 1024


class TestApp:
    """An ASGI application whose path picks the behaviour under test."""

    __test__ = False

    def __init__(self) -> None:
        self.scopes: list[Message] = []
        self.received: list[Message] = []
        self.receive_called = False
        self.body_sent = False
        self.bytes_sent = 0
        self.release = asyncio.Event()
        self.finished = asyncio.Event()

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.scopes.append(scope)
        name = scope["path"].strip("/").replace("-", "_").replace("/", "_")
        handler = getattr(self, f"handle_{name}", self.handle_echo)
        try:
            await handler(scope, receive, send)
        finally:
            self.finished.set()

    async def read_body(self, receive: Any) -> bytes:
        self.receive_called = True
        body = b""
        while True:
            message: Message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect":
                return body
            body += bytes(message.get("body", b""))
            if not message.get("more_body", False):
                return body

    async def handle_echo(self, scope: Message, receive: Any, send: Any) -> None:
        body = await self.read_body(receive)
        payload = f"{scope['method']} {scope['path']} ".encode() + body
        await send_whole(send, 200, payload)

    async def handle_unread(self, scope: Message, receive: Any, send: Any) -> None:
        await send_whole(send, 200, b"unread")

    async def handle_stall(self, scope: Message, receive: Any, send: Any) -> None:
        await self.read_body(receive)

    async def handle_status_204(self, scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def handle_status_304(self, scope: Message, receive: Any, send: Any) -> None:
        headers = [(b"etag", b'"abc"'), (b"content-length", b"5120")]
        await send({"type": "http.response.start", "status": 304, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def handle_chunked(self, scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})

    async def handle_short(self, scope: Message, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello"})

    async def handle_raise_before(
        self, scope: Message, receive: Any, send: Any
    ) -> None:
        raise RuntimeError("application failed before the response")

    async def handle_raise_after(self, scope: Message, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        raise RuntimeError("application failed inside the body")

    async def handle_late(self, scope: Message, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await asyncio.wait_for(self.release.wait(), WAIT)
        self.body_sent = True
        await send({"type": "http.response.body", "body": b"hello"})

    async def handle_big(self, scope: Message, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * BIG_CHUNK_BYTES
        while self.bytes_sent < BIG_RESPONSE_BYTES:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.bytes_sent += len(chunk)
        await send({"type": "http.response.body", "body": b""})

    async def handle_inject(self, scope: Message, receive: Any, send: Any) -> None:
        value = scope["query_string"].replace(b"%0D", b"\r").replace(b"%0A", b"\n")
        headers = [(b"x-note", value), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


async def send_whole(send: Any, status: int, body: bytes) -> None:
    """Send a complete response with a Content-Length."""
    headers = [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Served:
    """A running protocol server, its application and its open connections."""

    app: TestApp
    port: int
    connections: set[HttpServerProtocol] = field(default_factory=set)
    clients: list[Client] = field(default_factory=list)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """Serve a fresh TestApp with small limits on a loopback port."""
    app = TestApp()
    connections: set[HttpServerProtocol] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpServerProtocol(app, LIMITS, connections), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    served = Served(app, port, connections)
    yield served
    for client in served.clients:
        client.close()
    server.close()
    for connection in list(connections):
        if connection.transport is not None:
            connection.transport.abort()
    await server.wait_closed()


@dataclass
class Response:
    """One response read from the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        """Return the first value of a header (case-insensitive)."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Client:
    """A raw TCP client: exact bytes out, responses parsed by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_head(self) -> Response:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        lines = raw[:-4].decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return Response(int(lines[0].split(" ")[1]), headers, b"", raw)

    async def read_response(self, *, head_request: bool = False) -> Response:
        """Read one response, framed by its Content-Length, chunks or close."""
        response = await self.read_head()
        if head_request or response.status in (100, 204, 304):
            return response
        length = response.header("content-length")
        if response.header("transfer-encoding") == "chunked":
            response.body = await self._read_chunked()
        elif length is not None:
            response.body = await asyncio.wait_for(
                self.reader.readexactly(int(length)), WAIT
            )
        else:
            response.body = await self.read_to_end()
        return response

    async def _read_chunked(self) -> bytes:
        body = b""
        while True:
            size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), WAIT)
            size = int(size_line.split(b";")[0], 16)
            data = await asyncio.wait_for(self.reader.readexactly(size + 2), WAIT)
            if size == 0:
                return body
            body += data[:-2]

    async def read_to_end(self) -> bytes:
        """Read until the server closes, and fail if it stays open for WAIT seconds."""
        data = b""
        while True:
            try:
                part = await asyncio.wait_for(self.reader.read(65536), WAIT)
            except ConnectionResetError:
                return data
            if not part:
                return data
            data += part

    def close(self) -> None:
        self.writer.close()


def request(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "1.1",
) -> bytes:
    """Build a request with Host and, for a body, Content-Length."""
    lines = [f"{method} {target} HTTP/{version}", "Host: outpost.test"]
    names = {name.lower() for name, _ in headers or []}
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def connect(served: Served) -> Client:
    client = await Client.connect(served.port)
    served.clients.append(client)
    return client


# Keep-alive and pipelining.


async def test_keepalive_serves_several_requests(served: Served) -> None:
    client = await connect(served)

    responses = []
    for index in range(3):
        await client.send(request("POST", f"/echo/{index}", body=b"n%d" % index))
        responses.append(await client.read_response())
    client.close()

    assert [response.status for response in responses] == [200, 200, 200]
    assert responses[2].body == b"POST /echo/2 n2"
    assert len(served.app.scopes) == 3
    assert all(response.header("connection") is None for response in responses)


async def test_pipelined_requests_answered_in_order(served: Served) -> None:
    client = await connect(served)
    batch = (
        request("POST", "/echo/a", body=b"first")
        + request("GET", "/echo/b")
        + request("POST", "/echo/c", body=b"third")
    )

    await client.send(batch)
    responses = [await client.read_response() for _ in range(3)]
    client.close()

    assert responses[0].body == b"POST /echo/a first"
    assert responses[1].body == b"GET /echo/b "
    assert responses[2].body == b"POST /echo/c third"


# Request framing that the parser rejects.

REJECTED_REQUESTS = {
    "content_length_and_chunked": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "two_content_lengths": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Content-Length: 40\r\n\r\nhello"
    ),
    "content_length_list": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 40\r\n\r\nhello"
    ),
    "content_length_plus": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"
    ),
    "obs_fold": b"GET /echo HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "space_before_colon": b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n",
    "bare_lf": b"GET /echo HTTP/1.1\nHost: x\n\n",
    "bare_lf_in_headers": b"GET /echo HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
    # llhttp ends a request that requests an upgrade at its head, so the body
    # would be dropped while its length still went upstream.
    "upgrade_with_length": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        b"Upgrade: h2c\r\nContent-Length: 5\r\n\r\nhello"
    ),
    "upgrade_with_chunks": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        b"Upgrade: h2c\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    ),
    # RFC 9112 section 3.2: exactly one Host in an HTTP/1.1 request.
    "no_host": b"GET /echo HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two_hosts": b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "two_hosts_http10": b"GET /echo HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    "version_2": b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n",
    "version_0_9": b"GET /echo\r\n\r\n",
}


@pytest.mark.parametrize("raw", REJECTED_REQUESTS.values(), ids=REJECTED_REQUESTS)
async def test_invalid_framing_rejected(served: Served, raw: bytes) -> None:
    client = await connect(served)

    await client.send(raw)
    response = await client.read_response()
    rest = await client.read_to_end()

    assert response.status == 400
    assert orjson.loads(response.body)["error"]["code"] == "PROXY_BAD_REQUEST"
    assert response.header("connection") == "close"
    assert rest == b""
    assert served.app.scopes == []


async def test_invalid_chunk_size_rejected(served: Served) -> None:
    client = await connect(served)

    # The head is valid, so the application starts before the bad chunk size.
    await client.send(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n"
    )
    response = await client.read_response()
    rest = await client.read_to_end()
    await asyncio.wait_for(served.app.finished.wait(), WAIT)

    assert response.status == 400
    assert orjson.loads(response.body)["error"]["code"] == "PROXY_BAD_REQUEST"
    assert rest == b""
    assert [message["type"] for message in served.app.received] == ["http.disconnect"]


async def test_chunk_size_error_after_head_disconnects(served: Served) -> None:
    client = await connect(served)

    await client.send(
        b"POST /stall HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n"
    )
    await asyncio.wait_for(_wait_for(lambda: len(served.app.received) == 1), WAIT)
    await client.send(b"zz\r\nGET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    rest = await client.read_to_end()

    assert served.app.received[-1]["type"] == "http.disconnect"
    assert [scope["path"] for scope in served.app.scopes] == ["/stall"]
    assert b"smuggled" not in rest


# Header limits and slow clients.


async def test_head_over_limit_rejected(served: Served) -> None:
    client = await connect(served)

    await client.send(request("GET", "/echo", [("X-Pad", "a" * 5000)]))
    response = await client.read_response()
    rest = await client.read_to_end()

    assert response.status == 400
    assert "4096 bytes" in orjson.loads(response.body)["error"]["message"]
    assert rest == b""
    assert served.app.scopes == []


async def test_head_over_limit_on_kept_alive_connection(served: Served) -> None:
    client = await connect(served)
    await client.send(request("GET", "/echo/first"))
    first = await client.read_response()

    await client.send(request("GET", "/echo/second", [("X-Pad", "a" * 5000)]))
    second = await client.read_response()
    rest = await client.read_to_end()

    assert first.status == 200
    assert second.status == 400
    assert rest == b""
    assert [scope["path"] for scope in served.app.scopes] == ["/echo/first"]


async def test_head_over_limit_when_pipelined(served: Served) -> None:
    client = await connect(served)

    await client.send(
        request("GET", "/echo/first")
        + request("GET", "/echo/second", [("X-Pad", "a" * 5000)])
    )
    raw = await client.read_to_end()

    # The first request gets its whole response, then the second its 400.
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.count(b"HTTP/1.1 200") == 1
    assert b"HTTP/1.1 400" in raw
    assert raw.index(b"HTTP/1.1 400") > raw.index(b"GET /echo/first")
    assert b"head_too_large" not in raw[: raw.index(b"HTTP/1.1 400")]
    assert "/echo/second" not in [scope["path"] for scope in served.app.scopes]


async def test_invalid_framing_when_pipelined(served: Served) -> None:
    client = await connect(served)

    await client.send(
        request("GET", "/echo/first")
        + b"POST /echo/second HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    raw = await client.read_to_end()

    assert raw.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 400" in raw
    assert [scope["path"] for scope in served.app.scopes] == ["/echo/first"]


async def test_slowloris_head_closed(served: Served) -> None:
    client = await connect(served)
    await client.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        for index in range(40):
            await asyncio.sleep(0.1)
            client.writer.write(b"X-Slow-%d: 1\r\n" % index)

    trickler = asyncio.ensure_future(trickle())
    rest = await client.read_to_end()
    is_trickling = not trickler.done()
    trickler.cancel()

    assert rest == b""
    assert is_trickling
    assert served.app.scopes == []


async def test_slowloris_head_after_response_closed() -> None:
    # The idle timeout is far longer than WAIT here, so only the head
    # timeout can close a connection whose next head started during a response.
    app = TestApp()
    connections: set[HttpServerProtocol] = set()
    limits = ServerLimits(head_timeout=0.3, idle_timeout=WAIT * 4)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpServerProtocol(app, limits, connections), "127.0.0.1", 0
    )
    client = await Client.connect(server.sockets[0].getsockname()[1])
    try:
        await client.send(request("GET", "/late") + b"GET /echo HTTP/1.1\r\n")
        await asyncio.sleep(0.6)
        app.release.set()
        response = await client.read_response()

        async def trickle() -> None:
            for index in range(80):
                await asyncio.sleep(0.1)
                client.writer.write(b"X-Slow-%d: 1\r\n" % index)

        trickler = asyncio.ensure_future(trickle())
        rest = await client.read_to_end()
        is_trickling = not trickler.done()
        trickler.cancel()
    finally:
        client.close()
        server.close()
        for connection in list(connections):
            if connection.transport is not None:
                connection.transport.abort()
        await server.wait_closed()

    assert response.body == b"hello"
    assert rest == b""
    assert is_trickling
    assert [scope["path"] for scope in app.scopes] == ["/late"]


async def test_idle_keepalive_closed(served: Served) -> None:
    client = await connect(served)
    await client.send(request("GET", "/echo"))
    response = await client.read_response()

    rest = await client.read_to_end()

    assert response.status == 200
    assert rest == b""
    assert served.connections == set()


async def test_body_stall_disconnects(served: Served) -> None:
    client = await connect(served)

    await client.send(request("POST", "/stall", [("Content-Length", "10")]) + b"12345")
    await asyncio.wait_for(served.app.finished.wait(), WAIT)
    rest = await client.read_to_end()

    assert served.app.received[0]["body"] == b"12345"
    assert served.app.received[-1]["type"] == "http.disconnect"
    assert b"HTTP/1.1 200" not in rest


# Expect: 100-continue.


async def test_continue_sent_when_body_read(served: Served) -> None:
    client = await connect(served)
    head = request(
        "POST", "/echo", [("Content-Length", "5"), ("Expect", "100-continue")]
    )

    await client.send(head)
    interim = await client.read_head()
    receive_called = served.app.receive_called
    await client.send(b"hello")
    final = await client.read_response()

    assert interim.status == 100
    assert receive_called
    assert final.status == 200
    assert final.body == b"POST /echo hello"


async def test_continue_not_sent_when_unread(served: Served) -> None:
    client = await connect(served)
    head = request(
        "POST", "/unread", [("Content-Length", "5"), ("Expect", "100-continue")]
    )

    await client.send(head)
    final = await client.read_response()
    rest = await client.read_to_end()

    assert final.status == 200
    assert final.body == b"unread"
    assert final.header("connection") == "close"
    assert b"100 Continue" not in final.raw + rest
    assert rest == b""
    assert served.app.received == []


async def test_unread_body_not_parsed_as_request(served: Served) -> None:
    client = await connect(served)
    smuggled = request("GET", "/echo/smuggled")

    await client.send(
        request("POST", "/unread", [("Content-Length", str(len(smuggled)))])
    )
    final = await client.read_response()
    await client.send(smuggled)
    rest = await client.read_to_end()

    assert final.status == 200
    assert rest == b""
    assert [scope["path"] for scope in served.app.scopes] == ["/unread"]


# Bodyless responses.


async def test_head_response_has_no_body(served: Served) -> None:
    client = await connect(served)

    await client.send(request("HEAD", "/echo"))
    head = await client.read_response(head_request=True)
    await client.send(request("GET", "/echo/next"))
    following = await client.read_response()

    assert head.header("content-length") == str(len(b"HEAD /echo "))
    assert following.status == 200
    assert following.raw.startswith(b"HTTP/1.1 200")
    assert following.body == b"GET /echo/next "


@pytest.mark.parametrize("status", [204, 304])
async def test_bodyless_status_not_framed(served: Served, status: int) -> None:
    client = await connect(served)

    await client.send(request("GET", f"/status/{status}"))
    response = await client.read_response()
    await client.send(request("GET", "/echo/next"))
    following = await client.read_response()

    assert response.status == status
    assert response.header("transfer-encoding") is None
    assert following.raw.startswith(b"HTTP/1.1 200")
    assert following.body == b"GET /echo/next "


async def test_not_modified_keeps_content_length(served: Served) -> None:
    client = await connect(served)

    await client.send(request("GET", "/status/304"))
    response = await client.read_response()

    assert response.header("content-length") == "5120"


# Response framing.


async def test_unsized_response_chunked_for_http11(served: Served) -> None:
    client = await connect(served)

    await client.send(request("GET", "/chunked"))
    response = await client.read_response()
    await client.send(request("GET", "/echo/next"))
    following = await client.read_response()

    assert response.header("transfer-encoding") == "chunked"
    assert response.body == b"abcd"
    assert following.status == 200


async def test_unsized_response_closes_for_http10(served: Served) -> None:
    client = await connect(served)

    await client.send(request("GET", "/chunked", version="1.0"))
    response = await client.read_response()

    assert response.header("transfer-encoding") is None
    assert response.header("content-length") is None
    assert response.body == b"abcd"


async def test_http10_keepalive_announced(served: Served) -> None:
    client = await connect(served)

    await client.send(
        request("GET", "/echo/a", [("Connection", "keep-alive")], version="1.0")
    )
    first = await client.read_response()
    await client.send(request("GET", "/echo/b", version="1.0"))
    second = await client.read_response()
    rest = await client.read_to_end()

    assert first.header("connection") == "keep-alive"
    assert second.status == 200
    assert second.header("connection") == "close"
    assert rest == b""


async def test_short_body_closes_connection(served: Served) -> None:
    client = await connect(served)

    await client.send(request("GET", "/short") + request("GET", "/echo/next"))
    head = await client.read_head()
    rest = await client.read_to_end()

    assert head.header("content-length") == "10"
    assert rest == b"hello"
    assert [scope["path"] for scope in served.app.scopes] == ["/short"]


async def test_error_before_head_returns_500(served: Served) -> None:
    client = await connect(served)

    await client.send(request("GET", "/raise-before"))
    response = await client.read_response()
    rest = await client.read_to_end()

    assert response.status == 500
    assert orjson.loads(response.body)["error"]["code"] == "PROXY_INTERNAL_ERROR"
    assert response.header("connection") == "close"
    assert rest == b""


async def test_error_after_head_closes(served: Served) -> None:
    client = await connect(served)

    await client.send(request("GET", "/raise-after"))
    head = await client.read_head()
    rest = await client.read_to_end()

    assert head.status == 200
    assert rest == b"hello"


async def test_head_written_before_late_body(served: Served) -> None:
    client = await connect(served)

    await client.send(request("GET", "/late"))
    head = await client.read_head()
    body_sent_before_head = served.app.body_sent
    served.app.release.set()
    body = await asyncio.wait_for(client.reader.readexactly(5), WAIT)

    assert head.status == 200
    assert not body_sent_before_head
    assert body == b"hello"


async def test_unread_response_applies_backpressure(served: Served) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", served.port))
    await loop.sock_sendall(sock, request("GET", "/big"))

    # Wait until the application stops making progress against the agent
    # that never reads.
    last = -1
    while served.app.bytes_sent != last:
        last = served.app.bytes_sent
        await asyncio.sleep(0.3)
    (connection,) = served.connections
    assert connection.transport is not None
    buffered = connection.transport.get_write_buffer_size()
    sock.close()

    assert served.app.bytes_sent < BIG_RESPONSE_BYTES // 4
    assert buffered < 1024 * 1024
    assert not served.app.finished.is_set()


async def test_unread_response_times_out() -> None:
    app = TestApp()
    connections: set[HttpServerProtocol] = set()
    limits = ServerLimits(send_timeout=0.3)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpServerProtocol(app, limits, connections), "127.0.0.1", 0
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", server.sockets[0].getsockname()[1]))
        await loop.sock_sendall(sock, request("GET", "/big"))
        await asyncio.wait_for(app.finished.wait(), WAIT)
        await asyncio.wait_for(_wait_for(lambda: not connections), WAIT)
    finally:
        sock.close()
        server.close()
        for connection in list(connections):
            if connection.transport is not None:
                connection.transport.abort()
        await server.wait_closed()

    assert app.finished.is_set()
    assert connections == set()


# Response header injection.

INJECTED_VALUES = {
    "crlf": "a%0D%0Ax-injected:%201",
    "lf": "a%0Ax-injected:%201",
    "cr": "a%0Dx-injected:%201",
}


@pytest.mark.parametrize("query", INJECTED_VALUES.values(), ids=INJECTED_VALUES)
async def test_header_line_break_not_written(served: Served, query: str) -> None:
    client = await connect(served)

    await client.send(request("GET", f"/inject?{query}"))
    raw = await client.read_to_end()

    assert b"x-injected" not in raw.lower()


async def _wait_for(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


# Worker processes: signals, crashes and a second server on the port.

SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}


def provider(upstream: RecordingUpstream) -> dict[str, Any]:
    """Return a transparent provider ``alpha`` in front of ``upstream``."""
    return {
        "name": "alpha",
        "base_url": upstream.url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {"mode": "transparent"},
    }


def worker_pids(outpost: OutpostServer) -> set[int]:
    """Return the ids of the server's worker processes."""
    assert outpost.process is not None
    workers = set()
    for pid in child_pids(outpost.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            workers.add(pid)
    return workers


def has_exited(pid: int) -> bool:
    """Return True once ``pid`` is gone or a zombie, holding no sockets."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def test_sigterm_finishes_streamed_response(start_outpost: StartOutpost) -> None:
    arrived = threading.Event()

    def stream(request: RecordedRequest, connection: Connection) -> Reply:
        arrived.set()
        return Reply(chunks=[(0.3, b"one,"), (0.3, b"two,"), (0.3, b"three")])

    upstream = RecordingUpstream(stream)
    try:
        outpost = start_outpost([provider(upstream)], env=SECRET_ENV)
        idle = socket.create_connection(("127.0.0.1", outpost.port), timeout=WAIT)
        streamed = socket.create_connection(("127.0.0.1", outpost.port), timeout=WAIT)
        streamed.sendall(
            b"GET /p/alpha/stream HTTP/1.1\r\nHost: outpost.test\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert arrived.wait(WAIT)

        started = time.monotonic()
        assert outpost.process is not None
        outpost.process.send_signal(signal.SIGTERM)
        idle_data = idle.recv(1024)
        raw = b""
        while part := streamed.recv(65536):
            raw += part
        exit_code = outpost.process.wait(WAIT * 3)
        idle.close()
        streamed.close()
    finally:
        upstream.close()

    assert exit_code == 0, outpost.output()
    assert idle_data == b""
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"one," in raw
    assert raw.endswith(b"three\r\n0\r\n\r\n")
    assert time.monotonic() - started < WAIT * 3


def test_sigterm_aborts_request_past_timeout(start_outpost: StartOutpost) -> None:
    arrived = threading.Event()
    release = threading.Event()

    def hang(request: RecordedRequest, connection: Connection) -> Reply:
        arrived.set()
        release.wait(30)
        return Reply()

    upstream = RecordingUpstream(hang)
    try:
        outpost = start_outpost(
            [provider(upstream)], env=SECRET_ENV, args=["--shutdown-timeout", "1"]
        )
        client = socket.create_connection(("127.0.0.1", outpost.port), timeout=20)
        client.sendall(
            b"GET /p/alpha/hang HTTP/1.1\r\nHost: outpost.test\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert arrived.wait(WAIT)

        assert outpost.process is not None
        outpost.process.send_signal(signal.SIGTERM)
        exit_code = outpost.process.wait(20)
        try:
            raw = client.recv(65536)
        except ConnectionResetError:
            raw = b""
        client.close()
    finally:
        release.set()
        upstream.close()

    assert exit_code == 0, outpost.output()
    assert b"HTTP/1.1 200" not in raw
    assert "still running after 1 s" in outpost.output()


def test_killed_worker_replaced(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([provider(upstream)], env=SECRET_ENV, workers=2)
    before = worker_pids(outpost)
    victim = min(before)

    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while not has_exited(victim):
        assert time.monotonic() < deadline, f"worker {victim} did not exit"
        time.sleep(0.02)
    deadline = time.monotonic() + 15
    while (
        len(worker_pids(outpost) - before) < 1
        or len(listening_inodes(outpost.port)) < 2
    ):
        assert time.monotonic() < deadline, outpost.output()
        # A connection the kernel queued on the dead worker's listener is
        # reset, so requests during the swap may fail; the server must not.
        with contextlib.suppress(ConnectionError):
            outpost.get("/healthz")
        time.sleep(0.05)
    statuses = [outpost.get("/healthz").status for _ in range(20)]

    assert set(statuses) == {200}
    assert victim not in worker_pids(outpost)
    assert len(worker_pids(outpost)) == 2
    assert f"worker {victim} exited with code -9" in outpost.output()
    assert outpost.get("/p/alpha/x").status == 200


def test_second_server_on_port_exits(
    start_outpost: StartOutpost, upstream: RecordingUpstream, tmp_path: Path
) -> None:
    first = start_outpost([provider(upstream)], env=SECRET_ENV, workers=2)
    listeners = listening_inodes(first.port)
    second = OutpostServer(tmp_path / "second", [provider(upstream)], env=SECRET_ENV)
    second.port = first.port

    result = subprocess.run(
        second.command(),
        env=second.env,
        cwd=second.workdir,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1
    assert f"port {first.port} on 127.0.0.1 is already in use" in result.stdout
    assert listening_inodes(first.port) == listeners
    assert [first.get("/healthz").status for _ in range(10)] == [200] * 10
    assert first.process is not None
    assert first.process.poll() is None
