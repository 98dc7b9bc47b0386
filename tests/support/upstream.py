"""A recording upstream: a real HTTP/1.1 server on loopback that keeps raw bytes.

Ordinary test servers normalise what they receive, which would hide exactly
the faults these tests look for, so this one parses requests by hand and
records the request line, every header in order with duplicates kept, the
body and the raw bytes. A handler decides each answer; it may also write raw
bytes to the socket itself to script framing cases.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RecordedRequest:
    """One request as the upstream received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes
    received_at: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> str:
        """Return the target without its query."""
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        """Return the raw query string, without the '?'."""
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header_values(self, name: str) -> list[str]:
        """Return every value of a header, compared case-insensitively."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        """Return the only value of a header; fail if it appears twice."""
        values = self.header_values(name)
        assert len(values) <= 1, f"header {name} sent {len(values)} times: {values}"
        return values[0] if values else None


@dataclass
class Reply:
    """A scripted response."""

    status: int = 200
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [("Content-Type", "application/json")]
    )
    body: bytes = b'{"ok":true}'
    chunks: list[tuple[float, bytes]] | None = None  # (delay seconds, bytes)
    close: bool = False


Handler = Callable[["RecordedRequest", "Connection"], "Reply | None"]


class Connection:
    """The socket of one upstream connection, for handlers that write raw bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: bytes) -> None:
        """Write raw bytes to the peer."""
        self.sock.sendall(data)

    def is_closed_by_peer(self) -> bool:
        """Return True when the peer has closed or reset the connection."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class RecordingUpstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records every request.

    With ``ssl_context``, each accepted connection is wrapped in TLS with that
    server context before any request is read.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler: Handler = handler or (lambda request, connection: Reply())
        self.requests: list[RecordedRequest] = []
        self.connections = 0
        self.handshake_failures = 0
        self._ssl_context = ssl_context
        self.raw: list[bytes] = []
        self._server = socket.create_server((host, 0))
        self.port: int = self._server.getsockname()[1]
        self.host = host
        self._stopping = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Return the base URL of this server."""
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def count(self) -> int:
        """Return how many requests were parsed."""
        return len(self.requests)

    def close(self) -> None:
        """Stop accepting connections."""
        self._stopping = True
        self._server.close()

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            # Without it, a reply written as head then body waits for a
            # delayed ACK (about 40 ms) on every reused connection.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        if self._ssl_context is not None:
            # The handshake runs on the connection's own thread, so a client
            # that stalls or fails it does not block the accept loop.
            try:
                sock = self._ssl_context.wrap_socket(sock, server_side=True)
            except OSError:
                with self._lock:
                    self.handshake_failures += 1
                sock.close()
                return
        reader = _Reader(sock)
        try:
            while True:
                request = reader.read_request()
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                reply = self.handler(request, Connection(sock))
                if reply is None:
                    return
                _write_reply(sock, request, reply)
                if reply.close:
                    return
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self.raw.append(reader.raw)
            sock.close()


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.raw = b""

    def _fill(self) -> bool:
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        self.buffer += data
        self.raw += data
        return True

    def read_request(self) -> RecordedRequest | None:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        names = {name.lower(): value for name, value in headers}
        if names.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self._read_exact(int(names.get("content-length", "0")))
        return RecordedRequest(method, target, headers, body, head)

    def _read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise ValueError("connection closed inside the body")
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return body

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._fill():
                raise ValueError("connection closed inside chunked framing")
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self._read_line().split(b";")[0], 16)
            if size == 0:
                while self._read_line():
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(size))
            self._read_line()


def _write_reply(sock: socket.socket, request: RecordedRequest, reply: Reply) -> None:
    lines = [f"HTTP/1.1 {reply.status} X"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    names = {name.lower() for name, _ in reply.headers}
    bodyless = request.method == "HEAD" or reply.status in (204, 304)
    if reply.chunks is not None:
        lines.append("Transfer-Encoding: chunked")
    elif "content-length" not in names and not bodyless:
        lines.append(f"Content-Length: {len(reply.body)}")
    if reply.close:
        lines.append("Connection: close")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if reply.chunks is not None:
        for delay, chunk in reply.chunks:
            time.sleep(delay)
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")
    elif not bodyless:
        sock.sendall(reply.body)
