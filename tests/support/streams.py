"""Helpers for streaming tests: timed chunk reading, scripted SSE, RSS sampling.

The upstream and the test client run in the same process, so their
``time.monotonic()`` timestamps can be compared directly to tell whether a
chunk was forwarded at once or held back.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil

from tests.support.rawhttp import RawResponse
from tests.support.upstream import Connection, RecordedRequest

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def open_response(
    port: int, data: bytes, *, timeout: float = 10.0
) -> tuple[socket.socket, RawResponse, bytes]:
    """Send ``data`` and read only the response head.

    Returns the open socket, the head (with an empty body) and the bytes
    already read past the head, so the caller can read the body at its pace.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.sendall(data)
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        received = sock.recv(65536)
        if not received:
            sock.close()
            raise ConnectionError(f"connection closed before a response: {buffer!r}")
        buffer += received
    head, rest = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    status = int(lines[0].split(" ")[1])
    return sock, RawResponse(status, headers, b"", head + b"\r\n\r\n"), rest


def iter_chunks(
    sock: socket.socket, buffer: bytes = b""
) -> Iterator[tuple[float, bytes]]:
    """Yield ``(arrival time, payload)`` for each chunk of a chunked body."""
    while True:
        while b"\r\n" not in buffer:
            buffer += _recv(sock)
        size_line, buffer = buffer.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(buffer) < size + 2:
            buffer += _recv(sock)
        if size == 0:
            return
        yield time.monotonic(), buffer[:size]
        buffer = buffer[size + 2 :]


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise ConnectionError("connection closed inside a chunked body")
    return data


@dataclass
class SseScript:
    """An upstream handler that sends server-sent events with pauses between.

    ``sent_at`` contains the time each event was written; ``closed_at`` is set
    when the handler notices that Outpost closed the upstream connection.
    """

    events: list[bytes]
    delays: list[float]
    content_type: str = SSE_CONTENT_TYPE
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    head_sent_at: float | None = None
    closed_at: float | None = None

    def __call__(self, request: RecordedRequest, connection: Connection) -> None:
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.extra_headers)
        head = (
            "HTTP/1.1 200 OK\r\n"
            f"Content-Type: {self.content_type}\r\n"
            "Cache-Control: no-cache\r\n"
            f"{extra}Transfer-Encoding: chunked\r\n\r\n"
        )
        connection.send(head.encode())
        self.head_sent_at = time.monotonic()
        for delay, event in zip(self.delays, self.events, strict=True):
            if self._wait_or_closed(connection, delay):
                return
            try:
                connection.send(b"%x\r\n%s\r\n" % (len(event), event))
            except OSError:
                self.closed_at = time.monotonic()
                return
            self.sent_at.append(time.monotonic())
        connection.send(b"0\r\n\r\n")

    def _wait_or_closed(self, connection: Connection, delay: float) -> bool:
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if connection.is_closed_by_peer():
                self.closed_at = time.monotonic()
                return True
            time.sleep(0.01)
        return False


class RssSampler:
    """Samples the resident memory of a process and all its children.

    Outpost serves from worker processes, so the parent alone would miss
    every byte the proxy path allocates.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.baseline = self.total_rss()
        self.peak = self.baseline
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def total_rss(self) -> int:
        """Return the summed RSS of the process tree, in bytes."""
        total = 0
        for process in [self.process, *self.process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join()
        self.peak = max(self.peak, self.total_rss())

    @property
    def growth(self) -> int:
        """Return the peak RSS above the baseline, in bytes."""
        return self.peak - self.baseline

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.peak = max(self.peak, self.total_rss())


@dataclass
class HashedBody:
    """What the hashing upstream received for one request."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    size: int
    sha256: str
    first_byte_at: float | None


class HashingUpstream:
    """An upstream that hashes request bodies as they stream, keeping none.

    The recording upstream keeps every body in memory, which is wrong for
    hundreds of megabytes; this one responds ``201`` with an empty JSON object
    after the whole body has been read.
    """

    def __init__(self) -> None:
        self.bodies: list[HashedBody] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Return the base URL of this server."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting connections."""
        self._server.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            try:
                self._serve_one(sock)
            except (OSError, ValueError):
                return

    def _serve_one(self, sock: socket.socket) -> None:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = sock.recv(65536)
            if not data:
                return
            buffer += data

        head, rest = buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [
            (name.strip(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        ]

        names = {name.lower(): value for name, value in headers}
        reader = _BodyHasher(sock, rest)
        if names.get("transfer-encoding", "").lower() == "chunked":
            reader.read_chunked()
        else:
            reader.read_exact(int(names.get("content-length", "0")))

        self.bodies.append(
            HashedBody(
                method,
                target,
                headers,
                reader.size,
                reader.digest.hexdigest(),
                reader.first_byte_at,
            )
        )

        body = b"{}"
        sock.sendall(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )


class _BodyHasher:
    def __init__(self, sock: socket.socket, buffer: bytes) -> None:
        self.sock = sock
        self.buffer = buffer
        self.digest = hashlib.sha256()
        self.size = 0
        self.first_byte_at: float | None = None

    def _fill(self) -> None:
        # Small reads keep the buffer, and so each slice copy, small.
        data = self.sock.recv(65536)
        if not data:
            raise ValueError("connection closed inside the body")
        self.buffer += data

    def _consume(self, data: bytes) -> None:
        if data and self.first_byte_at is None:
            self.first_byte_at = time.monotonic()
        self.digest.update(data)
        self.size += len(data)

    def read_exact(self, size: int) -> None:
        remaining = size
        while remaining:
            if not self.buffer:
                self._fill()
            part = self.buffer[:remaining]
            self.buffer = self.buffer[len(part) :]
            self._consume(part)
            remaining -= len(part)

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def read_chunked(self) -> None:
        while True:
            size = int(self._read_line().split(b";")[0], 16)
            if size == 0:
                while self._read_line():
                    pass
                return
            self.read_exact(size)
            self._read_line()


class EarlyReplyUpstream:
    """An upstream that answers as soon as it has read a request head.

    It never reads the request body: it writes ``reply``, shuts down its
    sending side and drains what arrives for a while before closing, as a
    server that rejects an upload early does.
    """

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.heads: list[bytes] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Return the base URL of this server."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting connections."""
        self._server.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    return
                buffer += data
            self.heads.append(buffer.split(b"\r\n\r\n", 1)[0])

            sock.sendall(self.reply)
            sock.shutdown(socket.SHUT_WR)

            sock.settimeout(0.2)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                try:
                    if not sock.recv(65536):
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return
