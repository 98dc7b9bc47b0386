"""The upstream HTTP/1.1 client: asyncio streams parsed by llhttp.

Outpost forwards one request per exchange to one fixed origin, so the client
needs little: a keep-alive pool, request framing, response parsing with
backpressure, and timeouts. Written on asyncio's ``Protocol`` interface, it
runs on the server's event loop with no thread of its own. The response is
parsed by llhttp (through httptools), the parser Node.js uses, which rejects
malformed framing: conflicting ``Content-Length`` values, ``Content-Length``
beside ``Transfer-Encoding``, bad chunk sizes and invalid header bytes.

The client changes nothing on the way. It sends the headers it is given,
plus ``Host`` and the body framing, and adds no ``Accept``, ``User-Agent``
or ``Accept-Encoding``. It follows no redirects and keeps no cookies.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator
from typing import cast

import httptools

from outpost.config.models import Timeouts
from outpost.config.urls import BaseUrl
from outpost.proxy.transport import Body, Transport, TransportError, UpstreamResponse

# A response head larger than this is rejected. llhttp itself sets no limit.
MAX_RESPONSE_HEAD_BYTES = 64 * 1024
# Reading from the upstream pauses while this many body bytes wait for the
# agent, and resumes below the low mark, so a slow agent keeps memory flat.
READ_HIGH_WATER = 256 * 1024
READ_LOW_WATER = 64 * 1024
# Idle connections kept per provider, and how long one may stay idle. A
# connection the upstream closes while idle is dropped as soon as its FIN
# arrives, so only a close that crosses a new request on the wire fails it.
MAX_IDLE_CONNECTIONS = 256
IDLE_SECONDS = 60.0
# Connections open at once per provider; more requests wait up to the pool
# timeout for one to come free.
MAX_CONNECTIONS = 1024
# The maximum interval between two checks of a connection's read timeout.
MAX_CHECK_INTERVAL = 30.0
# A stale keep-alive connection fails before any response byte. Only these
# methods are sent again on a new connection then, because the upstream may
# have acted on a request before closing.
RETRIED_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

_tls_context: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """Return the shared client TLS context: system CA store, HTTP/1.1 only."""
    global _tls_context
    if _tls_context is None:
        context = ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        _tls_context = context
    return _tls_context


class _Connection(asyncio.Protocol):
    """One upstream TCP (or TLS) connection and the exchange running on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self._loop = loop
        # The read timeout is checked by one repeating timer per connection,
        # so an exchange sets no timer. It fires at most a quarter late.
        self._check_every = min(read_timeout / 4, MAX_CHECK_INTERVAL)
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.is_closed = False
        self.idle_since = 0.0
        self.exchange_count = 0
        self._response: _Response | None = None
        self._write_ready: asyncio.Future[None] | None = None
        self._is_write_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self._timer = self._loop.call_later(self._check_every, self._check_read)

    def _check_read(self) -> None:
        self._timer = self._loop.call_later(self._check_every, self._check_read)
        if self._response is not None:
            self._response.check_idle(self._loop.time())

    def data_received(self, data: bytes) -> None:
        response = self._response
        if response is None:
            # Bytes between exchanges cannot belong to any request.
            self.close()
            return
        response.feed(data)

    def eof_received(self) -> bool:
        if self._response is not None:
            self._response.end_of_stream()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._response is not None:
            self._response.end_of_stream()
        self._wake_writer(exc)

    def pause_writing(self) -> None:
        self._is_write_paused = True

    def resume_writing(self) -> None:
        self._is_write_paused = False
        self._wake_writer(None)

    def begin(self, response: _Response) -> None:
        """Attach the exchange whose response arrives on this connection next."""
        self._response = response
        self.exchange_count += 1

    def detach(self) -> None:
        """Forget the finished exchange."""
        self._response = None

    def write(self, data: bytes) -> None:
        """Queue ``data``, or raise when the upstream has gone."""
        if self.is_closed or self.transport is None:
            raise TransportError("connection closed by the upstream", "request")
        self.transport.write(data)

    async def drain(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the write buffer to fall below its limit."""
        if not self._is_write_paused:
            return
        self._write_ready = self._loop.create_future()
        try:
            await asyncio.wait_for(self._write_ready, seconds)
        except TimeoutError:
            raise TransportError("write timeout", "request") from None
        finally:
            self._write_ready = None

    def _wake_writer(self, exc: Exception | None) -> None:
        waiter = self._write_ready
        if waiter is None or waiter.done():
            return
        if exc is None and not self.is_closed:
            waiter.set_result(None)
        else:
            waiter.set_exception(
                TransportError("connection closed by the upstream", "request")
            )

    def pause_reading(self) -> None:
        """Stop reading from the socket until :meth:`resume_reading`."""
        if self.transport is not None and not self.is_closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the socket again."""
        if self.transport is not None and not self.is_closed:
            self.transport.resume_reading()

    def close(self) -> None:
        """Close the connection; it is never used again."""
        self.is_closed = True
        if self.transport is not None:
            self.transport.close()


class _Response(UpstreamResponse):
    """Parser callbacks and the body queue for one upstream response."""

    __slots__ = (
        "_body_waiter",
        "_buffered",
        "_chunks",
        "_connection",
        "_error",
        "_head",
        "_head_bytes",
        "_header_bytes",
        "_is_head_request",
        "_is_interim",
        "_is_paused",
        "_keep_alive",
        "_last_read",
        "_loop",
        "_parser",
        "_raw_headers",
        "bytes_received",
        "headers",
        "is_complete",
        "read_timeout",
        "status",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: _Connection,
        is_head_request: bool,
        read_timeout: float,
    ) -> None:
        self._loop = loop
        self.read_timeout = read_timeout
        self._connection = connection
        self._is_head_request = is_head_request
        self._parser = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[None] = loop.create_future()
        self._head_bytes = 0
        self._header_bytes = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._is_interim = False
        self._keep_alive = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._is_paused = False
        self._body_waiter: asyncio.Future[None] | None = None
        self._error: TransportError | None = None
        self._last_read = loop.time()
        self.bytes_received = 0
        self.is_complete = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []

    # Feeding the parser.

    def feed(self, data: bytes) -> None:
        """Parse bytes from the connection."""
        self.bytes_received += len(data)
        self._last_read = self._loop.time()
        if self.is_complete or self._error is not None:
            # Bytes after the end of a response, or after a HEAD response's
            # head, mean the connection is out of step: it is not reused.
            self._connection.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(TransportError("invalid response status 101", "headers"))
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, TransportError):
                self._fail(exc.__context__)
            else:
                self._fail(TransportError("invalid HTTP response", self._phase()))
            return
        if not self._head.done():
            # Counted only while the head is incomplete after a read, so body
            # bytes that arrive with the head's end never count.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_RESPONSE_HEAD_BYTES:
                self._fail(TransportError("response head too large", "headers"))

    def end_of_stream(self) -> None:
        """Handle the upstream closing its side of the connection."""
        if self.is_complete or self._error is not None:
            return
        if self._head.done() and self._is_close_delimited():
            self._complete()
            return
        self._fail(TransportError("connection closed by the upstream", self._phase()))

    def _is_close_delimited(self) -> bool:
        names = {name.lower() for name, _ in self._raw_headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _phase(self) -> str:
        return "body" if self._head.done() else "headers"

    # llhttp callbacks.

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))
        # feed() counts no read that completes the head, so a head whose end
        # arrives in one large read is measured here, header by header.
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_RESPONSE_HEAD_BYTES:
            raise TransportError("response head too large", "headers")

    def on_headers_complete(self) -> None:
        if self._head.done():
            # A second response in the same bytes responds to a request that
            # was never sent. It must not replace the first.
            raise TransportError("invalid HTTP response", "body")
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim response (100 Continue, 103 Early Hints) is dropped,
            # and llhttp goes on to parse the final one.
            self._is_interim = True
            self._raw_headers = []
            return
        if not 200 <= status <= 599:
            # Outpost never forwards an Upgrade header, so 101 is invalid,
            # and agents' clients cannot handle a status above 599.
            raise TransportError(f"invalid response status {status}", "headers")
        self.status = status
        self.headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in self._raw_headers
        ]
        self._head.set_result(None)
        if self._is_head_request:
            # A response to HEAD has no body, whatever its Content-Length.
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self.is_complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > READ_HIGH_WATER and not self._is_paused:
            self._is_paused = True
            self._connection.pause_reading()
        self._wake_reader()

    def on_message_complete(self) -> None:
        if self._is_interim:
            self._is_interim = False
            return
        # llhttp resets the keep-alive flags once this callback returns.
        self._keep_alive = self._parser.should_keep_alive()
        if not self.is_complete:
            self._complete()

    # State changes.

    def _complete(self) -> None:
        self.is_complete = True
        self._wake_reader()

    def _fail(self, error: TransportError) -> None:
        self._error = error
        self._connection.close()
        if not self._head.done():
            self._head.set_exception(error)
        self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def body_sent(self, task: asyncio.Task[None]) -> None:
        """Fail the exchange when sending the request body failed before the head.

        After the head, the upstream has responded early and its response is
        still read, but the connection is not reused.
        """
        if task.cancelled():
            return
        error = task.exception()
        if error is None or self._head.done():
            return
        self._connection.close()
        self._head.set_exception(error)

    def is_reusable(self) -> bool:
        """Return True when the connection may carry another exchange."""
        return self.is_complete and self._error is None and self._keep_alive

    # The consumer's side.

    async def wait_for_head(self) -> None:
        """Wait for the response head."""
        await self._head

    async def read_chunk(self) -> bytes | None:
        chunks = self._chunks
        if not chunks:
            await self._wait_for_body()
            if not chunks:
                return None
        chunk = chunks.popleft()
        self._buffered -= len(chunk)
        if self._is_paused and self._buffered < READ_LOW_WATER:
            self._is_paused = False
            self._connection.resume_reading()
        return chunk

    async def _wait_for_body(self) -> None:
        while not self._chunks:
            if self.is_complete:
                # Bytes after a complete response fail the connection, which
                # is then not reused, but not the response.
                return
            if self._error is not None:
                raise self._error
            self._body_waiter = self._loop.create_future()
            try:
                await self._body_waiter
            finally:
                self._body_waiter = None

    def touch(self) -> None:
        """Note progress on the exchange, such as a request body chunk sent."""
        self._last_read = self._loop.time()

    def check_idle(self, now: float) -> None:
        """Fail the exchange when it waited longer than the read timeout.

        Waiting for the agent to read (reading paused) does not count.
        """
        if self.is_complete or self._error is not None or self._is_paused:
            return
        is_waiting = not self._head.done() or self._body_waiter is not None
        if is_waiting and now - self._last_read >= self.read_timeout:
            self._fail(TransportError("read timeout", self._phase()))


class _Pool:
    """Keep-alive connections to one origin, most recently used first."""

    def __init__(self, base: BaseUrl, timeouts: Timeouts) -> None:
        self._base = base
        self._timeouts = timeouts
        self._idle: list[_Connection] = []
        self._open_count = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """Return an idle connection, or open a new one."""
        idle = self._idle
        now = loop.time()
        while idle:
            connection = idle.pop()
            if not connection.is_closed and now - connection.idle_since < IDLE_SECONDS:
                return connection
            self.discard(connection)
        if self._open_count >= MAX_CONNECTIONS:
            await self._wait_for_slot(loop)
            return await self.acquire(loop)
        self._open_count += 1
        try:
            return await self._connect(loop)
        except BaseException:
            self._open_count -= 1
            self._wake_one()
            raise

    def release(self, connection: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        """Keep a connection whose exchange ended cleanly for the next request."""
        if connection.is_closed or len(self._idle) >= MAX_IDLE_CONNECTIONS:
            self.discard(connection)
            return
        connection.idle_since = loop.time()
        self._idle.append(connection)
        self._wake_one()

    def discard(self, connection: _Connection) -> None:
        """Close a connection and free its slot."""
        connection.close()
        self._open_count -= 1
        self._wake_one()

    def close(self) -> None:
        """Close every idle connection."""
        while self._idle:
            self.discard(self._idle.pop())

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, self._timeouts.pool)
        except TimeoutError:
            raise TransportError("pool timeout", "request") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        base = self._base
        is_tls = base.scheme == "https"
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop, self._timeouts.read),
                    base.host,
                    base.port,
                    ssl=tls_context() if is_tls else None,
                    server_hostname=base.host if is_tls else None,
                ),
                self._timeouts.connect,
            )
        except TimeoutError:
            raise TransportError("connect timeout", "request") from None
        except ssl.SSLError:
            raise TransportError("TLS handshake failed", "request") from None
        except OSError:
            raise TransportError(
                "connection refused or unreachable", "request"
            ) from None
        return connection


class _Exchange:
    """The async context manager :meth:`Http1Transport.open` returns."""

    __slots__ = (
        "_body",
        "_body_task",
        "_connection",
        "_head",
        "_is_chunked",
        "_loop",
        "_method",
        "_response",
        "_transport",
    )

    def __init__(
        self,
        transport: Http1Transport,
        method: str,
        head: bytes,
        body: Body,
        is_chunked: bool,
    ) -> None:
        self._transport = transport
        self._method = method
        self._head = head
        self._is_chunked = is_chunked
        self._body = body
        self._loop = asyncio.get_running_loop()
        self._connection: _Connection | None = None
        self._response: _Response | None = None
        self._body_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UpstreamResponse:
        try:
            return await self._start()
        except TransportError as exc:
            if not self._may_retry(exc):
                self._end(reusable=False)
                raise
        except BaseException:
            self._end(reusable=False)
            raise
        # The upstream closed a kept-alive connection just as it was reused.
        self._end(reusable=False)
        try:
            return await self._start()
        except BaseException:
            self._end(reusable=False)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._end(reusable=exc_info[0] is None)

    async def _start(self) -> _Response:
        transport = self._transport
        connection = await transport.pool.acquire(self._loop)
        response = _Response(
            self._loop, connection, self._method == "HEAD", transport.timeouts.read
        )
        connection.begin(response)
        self._connection = connection
        self._response = response
        self._send(connection, response)
        await response.wait_for_head()
        return response

    def _send(self, connection: _Connection, response: _Response) -> None:
        body = self._body
        if body is None:
            connection.write(self._head)
        elif isinstance(body, bytes):
            connection.write(self._head + body)
        else:
            connection.write(self._head)
            self._body_task = self._loop.create_task(
                self._send_stream(connection, response, body)
            )
            self._body_task.add_done_callback(response.body_sent)

    async def _send_stream(
        self,
        connection: _Connection,
        response: _Response,
        body: AsyncIterator[bytes],
    ) -> None:
        is_chunked = self._is_chunked
        write_timeout = self._transport.timeouts.write
        async for chunk in body:
            if not chunk:
                continue
            if is_chunked:
                connection.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                connection.write(chunk)
            response.touch()
            await connection.drain(write_timeout)
        if is_chunked:
            connection.write(b"0\r\n\r\n")
        await connection.drain(write_timeout)

    def _may_retry(self, error: TransportError) -> bool:
        connection = self._connection
        response = self._response
        return (
            connection is not None
            and response is not None
            and connection.exchange_count > 1
            and response.bytes_received == 0
            and error.kind == "connection closed by the upstream"
            and self._method in RETRIED_METHODS
            and (self._body is None or isinstance(self._body, bytes))
        )

    def _end(self, *, reusable: bool) -> None:
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        response = self._response
        body_task = self._body_task
        if body_task is not None and not body_task.done():
            body_task.cancel()
            reusable = False
        connection.detach()
        if (
            reusable
            and response is not None
            and response.is_reusable()
            and self._method != "HEAD"
            and (body_task is None or _succeeded(body_task))
        ):
            self._transport.pool.release(connection, self._loop)
        else:
            self._transport.pool.discard(connection)


def _succeeded(task: asyncio.Task[None]) -> bool:
    return not task.cancelled() and task.exception() is None


class Http1Transport(Transport):
    """HTTP/1.1 client for one provider's origin, with its timeouts."""

    def __init__(self, base: BaseUrl, timeouts: Timeouts) -> None:
        self.timeouts = timeouts
        self.pool = _Pool(base, timeouts)
        self._origin = base.origin
        self._host_line = f"Host: {base.host_header}\r\n"

    def open(
        self, method: str, url: str, headers: list[tuple[str, str]], body: Body
    ) -> _Exchange:
        origin = self._origin
        target = url[len(origin) :]
        if not url.startswith(origin) or not target.startswith("/"):
            # Credentials go only to the provider's own origin.
            raise TransportError("URL outside the provider's origin", "request")
        is_chunked = _is_chunked(headers, body)
        head = self._encode_head(method, target, headers, body, is_chunked)
        return _Exchange(self, method, head, body, is_chunked)

    def _encode_head(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: Body,
        is_chunked: bool,
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1\r\n", self._host_line]
        # The Host line always names the provider's origin. A signing scheme
        # that lists ``host`` among its headers signed that same value.
        names = _TITLE_CASE_NAMES
        lines += [
            f"{names.get(name) or _title_case(name)}: {value}\r\n"
            for name, value in headers
            if name != "host"
        ]
        if is_chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        elif isinstance(body, bytes) and not _has_length(headers):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        text = "".join(lines)
        _check_head(text, len(lines), target)
        return text.encode("utf-8")

    async def close(self) -> None:
        self.pool.close()


# Header names arrive lower-case. They go out in the usual capitalisation,
# as curl and most HTTP/1.1 clients send them, because some servers compare
# names case-sensitively. Names seen are kept, up to a bound, since an agent
# may send any number of different ones.
_TITLE_CASE_NAMES: dict[str, str] = {}
MAX_TITLE_CASE_NAMES = 1024


def _title_case(name: str) -> str:
    titled = "-".join(part[:1].upper() + part[1:] for part in name.split("-"))
    if len(_TITLE_CASE_NAMES) < MAX_TITLE_CASE_NAMES:
        _TITLE_CASE_NAMES[name] = titled
    return titled


def _has_length(headers: list[tuple[str, str]]) -> bool:
    return any(name == "content-length" for name, _ in headers)


def _is_chunked(headers: list[tuple[str, str]], body: Body) -> bool:
    """Return True for a streamed body of unknown length, sent chunked."""
    if body is None or isinstance(body, bytes):
        return False
    return not _has_length(headers)


def _check_head(text: str, line_count: int, target: str) -> None:
    """Raise unless the only line breaks in ``text`` are the ones it was built with.

    A CR, LF or NUL inside a header value or the target would let one header
    write others, or a second request, so it is rejected before anything is
    sent. Counting them over the whole head costs far less than a check per
    header.
    """
    if (
        text.count("\n") != line_count
        or text.count("\r") != line_count
        or "\0" in text
        or " " in target
    ):
        raise TransportError("invalid header or target in the request", "request")
