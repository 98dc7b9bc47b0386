"""Raw-socket HTTP for tests: exact request bytes in, parsed response out.

HTTP client libraries normalise paths and headers, which would hide the
faults a proxy test looks for, so these helpers write bytes as given.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import orjson


@dataclass
class RawResponse:
    """A response parsed from raw bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        """Return the first value of a header (case-insensitive)."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Return every value of a header (case-insensitive)."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> dict[str, object]:
        """Decode the body as a JSON object."""
        data = orjson.loads(self.body)
        assert isinstance(data, dict)
        return data

    @property
    def error_code(self) -> str | None:
        """Return the error envelope's code, if the body is one."""
        try:
            error = self.json().get("error")
        except orjson.JSONDecodeError:
            return None
        return error.get("code") if isinstance(error, dict) else None


def send_raw(
    port: int,
    data: bytes,
    *,
    timeout: float = 10.0,
    host: str = "127.0.0.1",
    source: str | None = None,
) -> RawResponse:
    """Send ``data`` on a new connection and read one response until close.

    ``source`` binds the client socket to that local address (for example
    127.0.0.2), so that a test can call from another loopback peer.
    """
    source_address = None if source is None else (source, 0)
    with socket.create_connection(
        (host, port), timeout=timeout, source_address=source_address
    ) as sock:
        sock.sendall(data)
        return read_response(sock, head_request=data.startswith(b"HEAD "))


def request_bytes(
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    *,
    close: bool = True,
) -> bytes:
    """Build a request exactly as given; adds Host and Content-Length if absent."""
    headers = list(headers or [])
    names = {name.lower() for name, _ in headers}
    if "host" not in names:
        headers.insert(0, ("Host", "outpost.test"))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    if close and "connection" not in names:
        headers.append(("Connection", "close"))
    head = f"{method} {target} HTTP/1.1\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("utf-8") + b"\r\n" + body


def read_response(
    sock: socket.socket, *, head_request: bool = False, buffer: bytes = b""
) -> RawResponse:
    """Read one response from ``sock``, honouring Content-Length or chunking.

    ``buffer`` contains bytes of the response already read from ``sock``.
    """
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"connection closed before a response: {buffer!r}")
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    response = RawResponse(status, headers, b"", head + b"\r\n\r\n")
    if status == 100:
        return response
    if head_request or status in (204, 304):
        return response
    length = response.header("content-length")
    if response.header("transfer-encoding") == "chunked":
        response.body = _read_chunked(sock, rest)
    elif length is not None:
        while len(rest) < int(length):
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        response.body = rest[: int(length)]
    else:
        while data := sock.recv(65536):
            rest += data
        response.body = rest
    return response


def _read_chunked(sock: socket.socket, buffer: bytes) -> bytes:
    body = b""
    while True:
        while b"\r\n" not in buffer:
            buffer += sock.recv(65536)
        size_line, buffer = buffer.split(b"\r\n", 1)
        size = int(size_line.split(b";")[0], 16)
        while len(buffer) < size + 2:
            buffer += sock.recv(65536)
        if size == 0:
            return body
        body += buffer[:size]
        buffer = buffer[size + 2 :]
