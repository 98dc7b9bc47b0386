"""The HTTP/1.1 server: one asyncio protocol per agent connection, running ASGI.

Requests are parsed by llhttp (through httptools), the parser Node.js uses.
It rejects the framing that request smuggling relies on: ``Content-Length``
beside ``Transfer-Encoding``, repeated or invalid lengths, invalid chunk
sizes, bare CR or LF line endings and header names with spaces. Such a
request gets a 400 in Outpost's JSON error envelope, and the connection
closes.

Everything runs on the worker's event loop, with no thread between the
socket and the application. Each request becomes an ASGI ``http`` scope;
the application is the same :class:`~outpost.server.app.OutpostApp` that
any ASGI server can run.

Framing of responses: a ``Content-Length`` from the application is kept and
enforced (a response that ends short or long closes the connection). Without
one, an HTTP/1.1 response is sent chunked and an HTTP/1.0 response ends with
the connection. Responses to HEAD and 1xx, 204 and 304 responses carry no
body.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import httptools

from outpost.errors import BadRequestError, ProxyError, error_body

log = logging.getLogger("outpost.server")

Message = dict[str, Any]
Application = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

NO_BODY_STATUSES = frozenset({204, 304})
# Request body bytes buffered for the application before reading pauses.
BODY_HIGH_WATER = 256 * 1024
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Size and time limits for agent connections.

    ``max_head_bytes`` bounds the request line plus headers. ``head_timeout``
    is the time allowed from a request's first byte to the end of its head,
    ``idle_timeout`` the time a kept-alive connection may wait for the next
    request, and ``body_timeout`` the longest pause inside a request body.
    ``send_timeout`` is the longest time a response write waits for the agent
    to read, after which the connection is aborted.
    """

    max_head_bytes: int = 64 * 1024
    head_timeout: float = 30.0
    idle_timeout: float = 75.0
    body_timeout: float = 60.0
    send_timeout: float = 60.0


class _DateHeader:
    """The ``Date`` header line, formatted once per second."""

    def __init__(self) -> None:
        self._second = 0
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            date = email.utils.formatdate(now, usegmt=True)
            self._line = b"date: " + date.encode() + b"\r\n"
        return self._line


DATE = _DateHeader()


class HttpServerProtocol(asyncio.Protocol):
    """One agent connection: parses requests and runs them one at a time."""

    def __init__(
        self,
        app: Application,
        limits: ServerLimits,
        connections: set[HttpServerProtocol],
    ) -> None:
        self._app = app
        self._limits = limits
        self._connections = connections
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._client: tuple[str, int] | None = None
        self._server: tuple[str, int] | None = None

        # The head being parsed.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect: bytes | None = None
        self._host_count = 0
        self._head_bytes = 0
        # The request line and headers of the current head, as parsed so far.
        self._parsed_head_bytes = 0
        self._in_head = False

        # The request being parsed, the one being served, and pipelined ones.
        self._parsing: _Cycle | None = None
        self._active: _Cycle | None = None
        self._waiting: collections.deque[_Cycle] = collections.deque()
        # One repeating check per connection enforces the head and idle
        # timeouts, so a request moves a deadline instead of a timer.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._linger: asyncio.TimerHandle | None = None

        self._is_write_paused = False
        self._write_ready: asyncio.Future[None] | None = None
        self._is_closing = False
        self._deferred_error: ProxyError | None = None
        self.is_lost = False
        # Resolved when the connection has closed, for a graceful shutdown.
        self.closed: asyncio.Future[None] = self._loop.create_future()

    # Connection events.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._connections.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self._client = (str(peer[0]), int(peer[1]))
        local = transport.get_extra_info("sockname")
        if isinstance(local, tuple):
            self._server = (str(local[0]), int(local[1]))
        self._deadline = self._loop.time() + self._limits.idle_timeout
        self._timer = self._loop.call_later(
            self._check_interval(), self._check_deadline
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_lost = True
        self._connections.discard(self)
        self._cancel_timer()
        for cycle in (self._active, self._parsing, *self._waiting):
            if cycle is not None:
                cycle.disconnect()
        self._waiting.clear()
        waiter = self._write_ready
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._is_closing:
            return
        if self._in_head or self._parsing is None:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._on_upgrade()
        except httptools.HttpParserError as exc:
            # on_headers_complete raises the error for a head over the limit.
            if isinstance(exc.__context__, BadRequestError):
                self._send_error_and_close(exc.__context__)
            else:
                self._reject_request(exc)
            return
        if self._in_head and self._head_bytes > self._limits.max_head_bytes:
            self._send_error_and_close(self._head_too_large())

    def _head_too_large(self) -> BadRequestError:
        return BadRequestError(
            f"request head is larger than {self._limits.max_head_bytes} "
            "bytes; send fewer or shorter headers",
            reason="head_too_large",
        )

    def pause_writing(self) -> None:
        self._is_write_paused = True

    def resume_writing(self) -> None:
        self._is_write_paused = False
        waiter = self._write_ready
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        """Wait while the agent reads slower than the response is written."""
        if not self._is_write_paused or self.is_lost:
            return
        self._write_ready = self._loop.create_future()
        try:
            await asyncio.wait_for(self._write_ready, self._limits.send_timeout)
        except TimeoutError:
            # The agent did not drain the write buffer in time. Aborting ends
            # the request as a disconnect, which releases its upstream connection.
            log.warning(
                "agent %s did not read the response for %.0f s; closing the connection",
                self._client_text(),
                self._limits.send_timeout,
            )
            if self.transport is not None:
                self.transport.abort()
        finally:
            self._write_ready = None

    # llhttp callbacks.

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._headers = []
        self._expect = None
        self._host_count = 0
        self._parsed_head_bytes = 0
        self._deadline = self._loop.time() + self._limits.head_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._parsed_head_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        self._headers.append((name, value))
        if name == b"expect":
            self._expect = value
        elif name == b"host":
            self._host_count += 1
        self._parsed_head_bytes += len(name) + len(value) + len(b": \r\n")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._deadline = None
        parser = self._parser

        # data_received counts only reads that end inside a head, so a head
        # that arrives whole in one read is measured here from its parts.
        if self._parsed_head_bytes > self._limits.max_head_bytes:
            raise self._head_too_large()
        version = parser.get_http_version()
        _check_version_and_host(version, self._host_count)
        if parser.should_upgrade() and _declares_body(self._headers):
            # llhttp ends such a request at its head and hands the body over
            # as data of the new protocol, so the body would be lost while its
            # Content-Length or chunked framing still went upstream.
            raise BadRequestError(
                "a request that asks for a protocol upgrade cannot carry a "
                "body; send it without the Upgrade header",
                reason="upgrade_with_body",
            )

        cycle = _Cycle(
            self,
            self._build_scope(version),
            keep_alive=parser.should_keep_alive(),
            is_head=parser.get_method() == b"HEAD",
            expects_continue=self._expect is not None
            and self._expect.lower() == b"100-continue"
            and version == "1.1",
        )

        self._parsing = cycle
        if self._active is None:
            self._start(cycle)
        else:
            # A pipelined request waits for the responses before it.
            self._waiting.append(cycle)
            if self.transport is not None:
                self.transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self._parsing
        if cycle is not None:
            cycle.feed_body(body)

    def on_message_complete(self) -> None:
        cycle = self._parsing
        if cycle is not None:
            cycle.end_body()

    # Requests.

    def _build_scope(self, version: str) -> Message:
        raw_path, _, query = self._url.partition(b"?")
        raw_path = raw_path.partition(b"#")[0]
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self._server,
            "client": self._client,
            "scheme": "http",
            "method": self._parser.get_method().decode("ascii"),
            "root_path": "",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "headers": self._headers,
        }

    def _start(self, cycle: _Cycle) -> None:
        self._active = cycle
        cycle.task = self._loop.create_task(cycle.run(self._app))

    def response_complete(self, cycle: _Cycle) -> None:
        """Go on with the next request, or close, once a response has ended."""
        self._active = None
        if self.is_lost:
            return
        if self._deferred_error is not None:
            self.write_error(self._deferred_error)
            self.close()
            return
        if not cycle.keep_alive or self._is_closing:
            self.close()
            return
        if not cycle.body_complete:
            # The application responded without reading the whole body. The
            # rest must not be parsed as a new request, and closing at once
            # can reset the connection before the agent has read the
            # response, so the agent's remaining bytes are read and dropped
            # for a short while first.
            cycle.discard_body()
            self._close_after_linger()
            return
        if self._waiting:
            self._start(self._waiting.popleft())
            if not self._waiting and self.transport is not None:
                self.transport.resume_reading()
            return
        if not self._in_head:
            # A next head that began during the response keeps the head
            # deadline that on_message_begin set from its first byte.
            self._deadline = self._loop.time() + self._limits.idle_timeout

    def _on_upgrade(self) -> None:
        # llhttp stops after the head of a request that requests a protocol
        # upgrade. Outpost upgrades nothing, so the request is served as a
        # plain one and the connection closes after the response.
        cycle = self._parsing
        if cycle is None:
            return
        cycle.keep_alive = False
        cycle.end_body()

    def _reject_request(self, exc: httptools.HttpParserError) -> None:
        detail = str(exc.args[0]) if exc.args else type(exc).__name__
        cycle = self._parsing
        if cycle is not None and not self._in_head and not cycle.body_complete:
            # A request already handed to the application has a broken body.
            # Its receive() returns http.disconnect, as the rest will not come.
            log.warning("invalid request body from %s: %s", self._client_text(), detail)
            cycle.disconnect()
            if cycle is not self._active or cycle.is_response_started:
                self.close()
                return
            # No response has started, so the agent gets the 400 below and
            # anything the application sends later is dropped.
            cycle.response_complete = True
            self._active = None
        self._send_error_and_close(
            BadRequestError(
                f"invalid HTTP request: {detail}; send a well-formed HTTP/1.1 "
                "request with one Content-Length or Transfer-Encoding: chunked",
                reason="invalid_http",
            )
        )

    def _send_error_and_close(self, error: ProxyError) -> None:
        """Reply to a request the parser rejected, then close the connection."""
        log.warning(
            "rejected request from %s status=%d reason=%s",
            self._client_text(),
            error.status,
            error.reason,
        )
        self._is_closing = True
        if self._active is not None:
            # The error belongs to a pipelined request behind the one being
            # served, whose response must go out first.
            self._deferred_error = error
            self.pause_reading()
            return
        self.write_error(error)
        self.close()

    def write_error(self, error: ProxyError) -> None:
        """Write ``error`` as a complete response that closes the connection."""
        body = error_body(error)
        head = (
            f"HTTP/1.1 {error.status} {_reason_phrase(error.status)}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        self.write(head + body)

    def _client_text(self) -> str:
        return f"{self._client[0]}:{self._client[1]}" if self._client else "unknown"

    # Connection state.

    def close(self) -> None:
        """Close the connection after what was already written."""
        self._is_closing = True
        self._cancel_timer()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """Close now if idle, otherwise after the response in progress."""
        self._is_closing = True
        if self._active is None:
            self.close()

    @property
    def is_idle(self) -> bool:
        """True when no request is being served."""
        return self._active is None

    def _close_after_linger(self) -> None:
        self._is_closing = True
        if self.transport is None:
            return
        self.transport.resume_reading()
        self._linger = self._loop.call_later(LINGER_SECONDS, self.close)

    def _check_interval(self) -> float:
        # A timeout fires at most this much late: a quarter of the shorter one.
        return min(self._limits.head_timeout, self._limits.idle_timeout) / 4

    def _check_deadline(self) -> None:
        self._timer = self._loop.call_later(
            self._check_interval(), self._check_deadline
        )
        deadline = self._deadline
        is_due = deadline is not None and self._loop.time() >= deadline
        if is_due and self._active is None:
            self.close()

    def _cancel_timer(self) -> None:
        for timer in (self._timer, self._linger):
            if timer is not None:
                timer.cancel()
        self._timer = self._linger = None

    def pause_reading(self) -> None:
        """Stop reading from the agent until :meth:`resume_reading`."""
        if self.transport is not None and not self.is_lost:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the agent again."""
        if self.transport is not None and not self.is_lost and not self._waiting:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        """Write to the agent; a gone agent's writes are dropped."""
        if self.transport is not None and not self.is_lost:
            self.transport.write(data)


# How long the rest of an unread request body is read and dropped before the
# connection closes.
LINGER_SECONDS = 2.0


class _Cycle:
    """One request and its response: the ASGI ``receive`` and ``send``."""

    __slots__ = (
        "_body_waiter",
        "_buffered",
        "_chunked",
        "_chunks",
        "_continue_sent",
        "_expects_continue",
        "_headers",
        "_is_discarding",
        "_length_left",
        "_protocol",
        "_read_paused",
        "_sent_body_end",
        "_started",
        "_status",
        "body_complete",
        "is_disconnected",
        "is_head",
        "keep_alive",
        "response_complete",
        "scope",
        "task",
    )

    def __init__(
        self,
        protocol: HttpServerProtocol,
        scope: Message,
        *,
        keep_alive: bool,
        is_head: bool,
        expects_continue: bool,
    ) -> None:
        self._protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.is_head = is_head
        self.task: asyncio.Task[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._read_paused = False
        self._body_waiter: asyncio.Future[None] | None = None
        self._expects_continue = expects_continue
        self._continue_sent = False
        self._is_discarding = False
        self._sent_body_end = False
        self.body_complete = False
        self.is_disconnected = False
        self.response_complete = False
        self._started = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunked = False
        self._length_left: int | None = None

    async def run(self, app: Application) -> None:
        """Run the application for this request and finish the response."""
        try:
            await app(self.scope, self.receive, self.send)
        except Exception as exc:
            if self._started:
                # The application gave up on a response already under way,
                # such as a stream the upstream broke off. It logged why.
                # Closing the connection signals that the body is cut.
                log.debug("response aborted: %r", exc)
            else:
                log.exception("request failed in the application")
            self._fail_response()
            return
        except asyncio.CancelledError:
            self._fail_response()
            raise
        if not self.response_complete:
            if not self._protocol.is_lost:
                log.error("the application returned without completing a response")
            self._fail_response()

    @property
    def is_response_started(self) -> bool:
        """True once the application has sent ``http.response.start``."""
        return self._started

    def _fail_response(self) -> None:
        if self.response_complete:
            # Work after the response failed; the response itself was whole.
            return
        protocol = self._protocol
        if not self._started:
            protocol.write_error(
                ProxyError("the request failed inside Outpost; its log has the cause")
            )
        # A response cut off after its head cannot be finished correctly.
        self.keep_alive = False
        self.response_complete = True
        protocol.response_complete(self)

    # The request body, from the parser.

    def feed_body(self, body: bytes) -> None:
        if self._is_discarding:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > BODY_HIGH_WATER and not self._read_paused:
            self._read_paused = True
            self._protocol.pause_reading()
        self._wake()

    def end_body(self) -> None:
        self.body_complete = True
        if self._is_discarding:
            self._protocol.close()
        self._wake()

    def discard_body(self) -> None:
        """Drop the rest of the body; close once it has all arrived."""
        self._is_discarding = True
        self._chunks.clear()
        if self.body_complete:
            self._protocol.close()

    def disconnect(self) -> None:
        self.is_disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ASGI.

    async def receive(self) -> Message:
        """Return the next body message, or ``http.disconnect``."""
        while True:
            if self.is_disconnected or self.response_complete:
                return {"type": "http.disconnect"}
            if self._chunks or (self.body_complete and not self._sent_body_end):
                return self._next_body_message()
            if (
                self._expects_continue
                and not self._continue_sent
                and not self.body_complete
            ):
                self._continue_sent = True
                self._protocol.write(CONTINUE_RESPONSE)
            await self._wait_for_body()

    def _next_body_message(self) -> Message:
        chunks = self._chunks
        if len(chunks) == 1:
            body = chunks.popleft()
        else:
            body = b"".join(chunks)
            chunks.clear()
        self._buffered = 0
        if self._read_paused:
            self._read_paused = False
            self._protocol.resume_reading()
        more_body = not self.body_complete
        if not more_body:
            self._sent_body_end = True
        return {"type": "http.request", "body": body, "more_body": more_body}

    async def _wait_for_body(self) -> None:
        loop = self._protocol._loop
        self._body_waiter = loop.create_future()
        # Only a request still sending its body can stall; after the body,
        # receive() waits for a disconnect, however long the response takes.
        seconds = None if self.body_complete else self._protocol._limits.body_timeout
        timer = (
            loop.call_later(seconds, self._body_timed_out)
            if seconds is not None
            else None
        )
        try:
            await self._body_waiter
        finally:
            self._body_waiter = None
            if timer is not None:
                timer.cancel()

    def _body_timed_out(self) -> None:
        log.warning(
            "request body stalled for %.0f s; closing the connection",
            self._protocol._limits.body_timeout,
        )
        self.disconnect()
        self._protocol.close()

    async def send(self, message: Message) -> None:
        """Write a response message, framing the body as the head requires."""
        kind = message["type"]
        if kind == "http.response.start":
            self._started = True
            self._status = message["status"]
            self._headers = message.get("headers", [])
            # The head is written with the first body message if that comes
            # in the same event-loop iteration, as for most responses. If not,
            # the callback writes it alone, so a stream's head never waits.
            self._protocol._loop.call_soon(self._flush_head)
            return
        if kind != "http.response.body" or self.response_complete:
            return

        body: bytes = message.get("body", b"")
        more_body: bool = message.get("more_body", False)
        protocol = self._protocol
        data = self._frame(body, more_body)
        if not more_body:
            self.response_complete = True

        if protocol.is_lost:
            # ASGI 2.3: sends after the agent has gone are silently dropped,
            # and the disconnect arrives through receive().
            if not more_body:
                protocol.response_complete(self)
            return
        if data:
            protocol.write(data)
        if not more_body:
            protocol.response_complete(self)
        else:
            await protocol.drain()

    def _flush_head(self) -> None:
        if not self._status or self.response_complete or self._protocol.is_lost:
            return
        self._protocol.write(self._encode_head())
        self._status = 0

    def _frame(self, body: bytes, more_body: bool) -> bytes:
        """Return the bytes to write for one body message, head first if due."""
        head = b""
        if self._status:
            head = self._encode_head()
            self._status = 0
        if self.is_head or self._length_left == -1:
            # No body is allowed: a HEAD response, or 1xx, 204 and 304.
            return head
        if self._chunked:
            framed = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                framed += b"0\r\n\r\n"
            return head + framed
        if self._length_left is not None:
            self._length_left -= len(body)
            if self._length_left < 0 or (not more_body and self._length_left):
                # The application broke its own Content-Length, so the
                # connection cannot carry another response.
                log.error("response body does not match its Content-Length")
                self.keep_alive = False
                body = body[: max(0, len(body) + self._length_left)]
        return head + body if head else body

    def _encode_head(self) -> bytes:
        status = self._status
        lines = [b"HTTP/1.1 %d %b\r\n" % (status, _reason_phrase(status).encode())]
        has_date = has_server = False
        length: int | None = None
        for name, value in self._headers:
            if name == b"content-length":
                length = int(value)
            elif name == b"date":
                has_date = True
            elif name == b"server":
                has_server = True
            lines.append(b"%b: %b\r\n" % (name, value))

        # Framing: no body, the given length, chunked, or until the close.
        if status < 200 or status in NO_BODY_STATUSES:
            self._length_left = -1
        elif length is not None:
            self._length_left = length
        elif self.is_head:
            pass
        elif self.scope["http_version"] == "1.1":
            self._chunked = True
            lines.append(b"transfer-encoding: chunked\r\n")
        else:
            self.keep_alive = False

        if not has_date:
            lines.append(DATE.line())
        if not has_server:
            lines.append(b"server: outpost\r\n")

        if (
            self._expects_continue
            and not self._continue_sent
            and not self.body_complete
        ):
            # The agent waits for 100 Continue before sending its body, which
            # is not read now, so the connection cannot be reused.
            self.keep_alive = False
        if not self.keep_alive or self._protocol._is_closing:
            self.keep_alive = False
            lines.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":
            lines.append(b"connection: keep-alive\r\n")
        lines.append(b"\r\n")

        head = b"".join(lines)
        if head.count(b"\n") != len(lines) or head.count(b"\r") != len(lines):
            # A header value with a line break would let a response write
            # other headers. RFC 9110 section 5.5 calls a bare CR as
            # dangerous as LF, because recipients parse it in different
            # ways. The application never sends either on purpose.
            raise ValueError("response header contains a line break")
        return head


_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _check_version_and_host(version: str, host_count: int) -> None:
    """Raise for versions other than 1.0 and 1.1, and for a wrong Host count.

    RFC 9112 section 3.2 requires a 400 for an HTTP/1.1 request without a
    Host header or with more than one, since two parsers could pick
    different ones.
    """
    if version not in ("1.0", "1.1"):
        raise BadRequestError(
            f"HTTP version {version} is not supported; send HTTP/1.1",
            reason="http_version",
        )
    if host_count > 1 or (version == "1.1" and host_count == 0):
        raise BadRequestError(
            f"request has {host_count} Host headers; send exactly one",
            reason="host_header",
        )


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Return True when a request head announces a non-empty body."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and int(value) > 0:
            return True
    return False


def _reason_phrase(status: int) -> str:
    # The phrase carries no meaning (RFC 9112 section 4), so an unknown
    # status gets none.
    return _REASONS.get(status, "")
