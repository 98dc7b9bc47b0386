"""Bodies stream through Outpost: events at once, bytes unchanged, memory flat."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.rawhttp import read_response, request_bytes
from tests.support.streams import (
    SSE_CONTENT_TYPE,
    HashingUpstream,
    RssSampler,
    SseScript,
    iter_chunks,
    open_response,
)
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}
MiB = 1024 * 1024
LARGE_BODY_BYTES = 200 * MiB
MAX_RSS_GROWTH = 50 * MiB


def provider(base_url: str, **overrides: Any) -> dict[str, Any]:
    """Return a transparent bearer provider named ``github`` at ``base_url``."""
    spec: dict[str, Any] = {
        "name": "github",
        "base_url": base_url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {"mode": "transparent", "treat_writes_as_sensitive": False},
    }
    spec.update(overrides)
    return spec


def event_arrivals(
    chunks: list[tuple[float, bytes]], events: list[bytes]
) -> list[float]:
    """Return when the last byte of each event reached the client."""
    arrivals = []
    received = 0
    boundary = 0
    remaining = iter(events)
    target = len(next(remaining))
    for arrived_at, payload in chunks:
        received += len(payload)
        while received >= target:
            arrivals.append(arrived_at)
            boundary = target
            try:
                target = boundary + len(next(remaining))
            except StopIteration:
                return arrivals
    return arrivals


def test_sse_events_arrive_one_by_one(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    events = [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n", b"data: 4\n\n"]
    events.append(b'event: done\ndata: {"n": 5}\n\n')
    script = SseScript(events, delays=[0.3, 0.1, 0.5, 0.2, 0.4])
    upstream.handler = script
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)

    request = request_bytes(
        "GET", "/p/github/events", [("Accept", "text/event-stream")]
    )
    sock, head, rest = open_response(outpost.port, request)
    head_arrived_at = time.monotonic()
    with sock:
        chunks = list(iter_chunks(sock, rest))

    assert head.status == 200
    assert head.header("content-type") == SSE_CONTENT_TYPE
    assert head.header("content-length") is None
    assert head.header("transfer-encoding") == "chunked"
    assert script.head_sent_at is not None
    assert head_arrived_at - script.head_sent_at < 0.2
    assert head_arrived_at < script.sent_at[0]
    assert b"".join(payload for _, payload in chunks) == b"".join(events)
    arrivals = event_arrivals(chunks, events)
    assert len(arrivals) == len(events)
    assert arrivals[0] < script.sent_at[-1] - 1.0
    for sent_at, arrived_at in zip(script.sent_at, arrivals, strict=True):
        assert arrived_at - sent_at < 0.2


STREAM_REQUESTS = {
    "no body": ("GET", [], b""),
    "length body": ("POST", [], b'{"stream":true}'),
    "chunked body": (
        "POST",
        [("Transfer-Encoding", "chunked")],
        b'f\r\n{"stream":true}\r\n0\r\n\r\n',
    ),
}


@pytest.mark.parametrize("kind", list(STREAM_REQUESTS))
def test_sse_disconnect_closes_upstream(
    start_outpost: StartOutpost, upstream: RecordingUpstream, kind: str
) -> None:
    events = [b"data: %d\n\n" % n for n in range(40)]
    script = SseScript(events, delays=[0.1] * len(events))
    upstream.handler = script
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)

    method, headers, body = STREAM_REQUESTS[kind]
    request = request_bytes(method, "/p/github/events", headers, body, close=False)
    sock, head, rest = open_response(outpost.port, request)
    received = b""
    for _, payload in iter_chunks(sock, rest):
        received += payload
        if received.count(b"\n\n") >= 2:
            break
    sock.close()
    closed_by_agent_at = time.monotonic()
    deadline = closed_by_agent_at + 3.0
    while script.closed_at is None and time.monotonic() < deadline:
        time.sleep(0.02)

    assert head.status == 200
    assert script.closed_at is not None, "upstream connection stayed open"
    assert script.closed_at - closed_by_agent_at < 1.0
    assert len(script.sent_at) < len(events)
    assert upstream.requests[0].body == b'{"stream":true}' or method == "GET"
    deadline = time.monotonic() + 2.0
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not lines:
        time.sleep(0.02)
        lines = [line for line in outpost.access_lines() if line["path"] == "/events"]
    assert [line["error"] for line in lines] == ["CLIENT_DISCONNECTED"]


def test_sse_content_type_variants_stream(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    # Streaming must not depend on the exact media type string.
    events = [b"data: a\n\n", b"data: b\n\n"]
    script = SseScript(events, delays=[0.0, 0.6], content_type="Text/Event-Stream")
    upstream.handler = script
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)

    sock, _, rest = open_response(outpost.port, request_bytes("GET", "/p/github/e"))
    with sock:
        chunks = list(iter_chunks(sock, rest))

    arrivals = event_arrivals(chunks, events)
    assert arrivals[0] < script.sent_at[1]


def test_gzip_sse_flushed_events_stream(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    # Each event is a separately flushed piece of one gzip stream, as a
    # compressing server sends it; Outpost must neither decode nor wait.
    compressor = zlib.compressobj(wbits=31)
    plain = [b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"]
    pieces = [
        compressor.compress(event) + compressor.flush(zlib.Z_SYNC_FLUSH)
        for event in plain
    ]
    pieces[-1] += compressor.flush()
    script = SseScript(
        pieces, delays=[0.1, 0.4, 0.4], extra_headers=[("Content-Encoding", "gzip")]
    )
    upstream.handler = script
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)

    request = request_bytes("GET", "/p/github/events", [("Accept-Encoding", "gzip")])
    sock, head, rest = open_response(outpost.port, request)
    with sock:
        chunks = list(iter_chunks(sock, rest))

    body = b"".join(payload for _, payload in chunks)
    assert head.header("content-encoding") == "gzip"
    assert body == b"".join(pieces)
    assert gzip.decompress(body) == b"".join(plain)
    arrivals = event_arrivals(chunks, pieces)
    assert arrivals[0] < script.sent_at[-1] - 0.5


def test_sse_streams_and_skips_cache(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    events = [b"data: 1\n\n", b"data: 2\n\n"]
    scripts = [SseScript(events, delays=[0.0, 0.6]) for _ in range(2)]
    upstream.handler = lambda request, connection: scripts[upstream.count - 1](
        request, connection
    )
    forwarding = {"mode": "transparent", "default_cache_ttl": 60}
    outpost = start_outpost(
        [provider(upstream.url, forwarding=forwarding)], env=SECRET_ENV
    )

    heads = []
    for script in scripts:
        sock, head, rest = open_response(
            outpost.port, request_bytes("GET", "/p/github/events")
        )
        with sock:
            chunks = list(iter_chunks(sock, rest))
        heads.append(head)

        assert b"".join(payload for _, payload in chunks) == b"".join(events)
        assert event_arrivals(chunks, events)[0] < script.sent_at[1]

    assert upstream.count == 2
    assert heads[1].header("x-proxy-cache") != "HIT"


GZIP_JSON = gzip.compress(orjson.dumps({"items": ["x" * 64] * 1000}))
ENCODED_BODIES = {
    "gzip": ("gzip", GZIP_JSON),
    "double gzip": ("gzip, gzip", gzip.compress(GZIP_JSON)),
    "brotli label": ("br", bytes(range(256)) * 16),
    "corrupt gzip": ("gzip", b"\x1f\x8b\x08\x00" + b"not really gzip" * 100),
}


@pytest.mark.parametrize("variant", list(ENCODED_BODIES))
def test_encoded_body_passes_unchanged(
    start_outpost: StartOutpost, upstream: RecordingUpstream, variant: str
) -> None:
    encoding, body = ENCODED_BODIES[variant]
    upstream.handler = lambda request, connection: Reply(
        headers=[
            ("Content-Type", "application/json"),
            ("Content-Encoding", encoding),
            ("Content-Length", str(len(body))),
        ],
        body=body,
    )
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/data", [("Accept-Encoding", "gzip, br")])

    assert response.status == 200
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(body).digest()
    assert response.header_values("content-encoding") == [encoding]
    assert response.header("content-length") == str(len(body))
    assert upstream.requests[0].header_values("accept-encoding") == ["gzip, br"]


def test_no_accept_encoding_added_upstream(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(
        headers=[("Content-Encoding", "gzip")], body=GZIP_JSON
    )
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)

    response = outpost.get("/p/github/data")

    assert response.status == 200
    assert response.body == GZIP_JSON
    assert upstream.requests[0].header_values("accept-encoding") == []
    assert upstream.requests[0].header_values("te") == []


def pattern_blocks(total: int, block: int = MiB) -> Iterator[bytes]:
    """Yield ``total`` bytes in blocks that differ, so reordering shows."""
    base = bytes(range(256)) * (block // 256)
    for index in range(total // block):
        yield index.to_bytes(8, "big") + base[8:]


def pattern_sha256(total: int) -> str:
    """Return the sha256 of what :func:`pattern_blocks` yields."""
    digest = hashlib.sha256()
    for block in pattern_blocks(total):
        digest.update(block)
    return digest.hexdigest()


def stream_download(request: RecordedRequest, connection: Connection) -> None:
    """Send LARGE_BODY_BYTES of patterned data with a Content-Length."""
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {LARGE_BODY_BYTES}\r\nConnection: close\r\n\r\n"
    )
    connection.send(head.encode())
    for block in pattern_blocks(LARGE_BODY_BYTES):
        connection.send(block)


@pytest.mark.slow
def test_large_download_streams_in_flat_memory(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = stream_download
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)
    assert outpost.process is not None
    outpost.get("/healthz")

    started = time.monotonic()
    with RssSampler(outpost.process.pid) as sampler:
        sock, head, rest = open_response(
            outpost.port, request_bytes("GET", "/p/github/downloads/blob")
        )
        first_byte_at = time.monotonic() if rest else None
        digest = hashlib.sha256(rest)
        size = len(rest)
        with sock:
            while size < LARGE_BODY_BYTES:
                data = sock.recv(1 << 20)
                if not data:
                    break
                first_byte_at = first_byte_at or time.monotonic()
                digest.update(data)
                size += len(data)

    assert head.status == 200
    assert head.header("content-length") == str(LARGE_BODY_BYTES)
    assert first_byte_at is not None
    assert first_byte_at - started < 1.0
    assert size == LARGE_BODY_BYTES
    assert digest.hexdigest() == pattern_sha256(LARGE_BODY_BYTES)
    assert sampler.growth < MAX_RSS_GROWTH, f"RSS grew {sampler.growth / MiB:.1f} MiB"


@pytest.mark.slow
def test_paused_agent_applies_backpressure(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    # The upstream writes as fast as it can while the agent reads nothing;
    # without backpressure Outpost would buffer the whole body meanwhile.
    upstream.handler = stream_download
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)
    assert outpost.process is not None
    outpost.get("/healthz")

    with RssSampler(outpost.process.pid) as sampler:
        sock, head, rest = open_response(
            outpost.port, request_bytes("GET", "/p/github/downloads/blob")
        )
        time.sleep(2.0)
        paused_growth = sampler.peak - sampler.baseline
        size = len(rest)
        with sock:
            while size < LARGE_BODY_BYTES:
                data = sock.recv(1 << 20)
                if not data:
                    break
                size += len(data)

    assert head.status == 200
    assert size == LARGE_BODY_BYTES
    assert paused_growth < MAX_RSS_GROWTH, f"RSS grew {paused_growth / MiB:.1f} MiB"
    assert sampler.growth < MAX_RSS_GROWTH, f"RSS grew {sampler.growth / MiB:.1f} MiB"


@pytest.mark.slow
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_upload_streams_in_flat_memory(
    start_outpost: StartOutpost, framing: str
) -> None:
    hashing = HashingUpstream()
    outpost = start_outpost([provider(hashing.url)], env=SECRET_ENV)
    assert outpost.process is not None
    outpost.get("/healthz")

    if framing == "chunked":
        framing_header = ("Transfer-Encoding", "chunked")
    else:
        framing_header = ("Content-Length", str(LARGE_BODY_BYTES))
    head = request_bytes(
        "PUT",
        "/p/github/uploads/blob",
        [("Content-Type", "application/octet-stream"), framing_header],
    )
    digest = hashlib.sha256()
    with (
        RssSampler(outpost.process.pid) as sampler,
        socket.create_connection(("127.0.0.1", outpost.port), timeout=30) as sock,
    ):
        sock.sendall(head)
        for block in pattern_blocks(LARGE_BODY_BYTES):
            digest.update(block)
            if framing == "chunked":
                block = b"%x\r\n%s\r\n" % (len(block), block)
            sock.sendall(block)
        if framing == "chunked":
            sock.sendall(b"0\r\n\r\n")
        finished_at = time.monotonic()
        response = read_response(sock)
    hashing.close()

    assert response.status == 201
    assert len(hashing.bodies) == 1
    received = hashing.bodies[0]
    assert received.size == LARGE_BODY_BYTES
    assert received.sha256 == digest.hexdigest()
    assert received.first_byte_at is not None
    assert received.first_byte_at < finished_at
    assert sampler.growth < MAX_RSS_GROWTH, f"RSS grew {sampler.growth / MiB:.1f} MiB"


@pytest.mark.slow
def test_large_idempotent_upload_refused_in_flat_memory(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    # An idempotent request must be hashed whole before forwarding, so
    # Outpost buffers it only up to a cap and refuses anything larger.
    outpost = start_outpost([provider(upstream.url)], env=SECRET_ENV)
    assert outpost.process is not None
    outpost.get("/healthz")
    head = request_bytes(
        "POST",
        "/p/github/uploads/blob",
        [
            ("Idempotency-Key", "big-1"),
            ("Content-Length", str(LARGE_BODY_BYTES)),
        ],
    )

    def upload(sock: socket.socket) -> None:
        try:
            sock.sendall(head)
            for block in pattern_blocks(LARGE_BODY_BYTES):
                sock.sendall(block)
        except OSError:
            return

    with (
        RssSampler(outpost.process.pid) as sampler,
        socket.create_connection(("127.0.0.1", outpost.port), timeout=30) as sock,
    ):
        sender = threading.Thread(target=upload, args=(sock,), daemon=True)
        sender.start()
        response = read_response(sock)
        # Outpost may have closed already; this only unblocks the sender.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=30)

    assert response.status == 413
    assert response.error_code == "PROXY_PAYLOAD_TOO_LARGE"
    assert upstream.count == 0
    assert sampler.growth < MAX_RSS_GROWTH, f"RSS grew {sampler.growth / MiB:.1f} MiB"
