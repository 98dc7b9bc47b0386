"""The upstream HTTP client, behind one small interface.

The pipeline talks only to :class:`Transport` and :class:`UpstreamResponse`,
so the client can be swapped after measuring. The implementation uses
pyreqwest, configured so that it changes nothing on the way: no automatic
decompression or ``Accept-Encoding``, no cookie jar, no redirect following,
no ``Referer``, and no read-ahead buffer (which would hold back server-sent
events until 64 KiB had arrived).

NOTE: pyreqwest 0.15 still adds ``Accept: */*`` and ``User-Agent:
python-pyreqwest/1.0.0`` when the agent sent neither header; the agent's
own values replace them.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import (
    ConnectError,
    ConnectTimeoutError,
    DecodeError,
    NetworkError,
    PoolTimeoutError,
    PyreqwestError,
    ReadTimeoutError,
    RequestTimeoutError,
    WriteTimeoutError,
)
from pyreqwest.request import StreamRequest
from pyreqwest.response import Response

from outpost.config.models import Timeouts

Body = bytes | AsyncIterator[bytes] | None
CONNECT_CAUSE = "client error (Connect)"


class TransportError(Exception):
    """The upstream exchange failed. ``kind`` names how, never with a URL."""

    def __init__(self, kind: str, phase: str) -> None:
        super().__init__(f"upstream {kind} during {phase}")
        self.kind = kind
        self.phase = phase

    @property
    def is_timeout(self) -> bool:
        """Return True for connect, read, write and pool timeouts."""
        return self.kind.endswith("timeout")


class UpstreamResponse(abc.ABC):
    """Status, headers and a chunk reader for one upstream response."""

    status: int
    headers: list[tuple[str, str]]

    @abc.abstractmethod
    async def read_chunk(self) -> bytes | None:
        """Return the next body chunk as it arrives, or None at the end."""


class Transport(abc.ABC):
    """Opens one upstream exchange; one instance per provider."""

    @abc.abstractmethod
    def open(
        self, method: str, url: str, headers: list[tuple[str, str]], body: Body
    ) -> Any:
        """Return an async context manager that yields an UpstreamResponse."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close pooled connections."""


class _ReqwestResponse(UpstreamResponse):
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: Response) -> None:
        self._response = response
        self.status = response.status
        # hyper consumes 100 and 103 itself and passes any other number up to
        # 999. Outpost never forwards an Upgrade header, so a 101 cannot be
        # valid, and agents' clients cannot handle a status above 599.
        if not 200 <= self.status <= 599:
            raise TransportError(f"invalid response status {self.status}", "headers")
        try:
            self.headers = [
                (str(name), str(value)) for name, value in response.headers.items()
            ]
        except ValueError:
            # pyreqwest 0.15 returns header values only as visible ASCII text,
            # so a value with other bytes cannot be relayed unchanged.
            name = _unreadable_header(response)
            raise TransportError(
                f"invalid response header {name!r}", "headers"
            ) from None

    async def read_chunk(self) -> bytes | None:
        try:
            chunk = await self._response.body_reader.read_chunk()
        except PyreqwestError as exc:
            raise _translate(exc, "body") from None
        return None if chunk is None else bytes(chunk)


def _unreadable_header(response: Response) -> str:
    """Return the name of the first header whose value is not ASCII text."""
    for name in dict.fromkeys(response.headers.keys()):
        try:
            response.headers.getall(name)
        except ValueError:
            return name
    return "?"


def _translate(exc: BaseException, phase: str) -> TransportError:
    # The client's own messages include the full URL, which may carry a
    # credential query parameter, so only the error's class is kept.
    if isinstance(exc, ConnectTimeoutError):
        kind = "connect timeout" if _failed_to_connect(exc) else "read timeout"
        return TransportError(kind, phase)
    if isinstance(exc, ConnectError) and not _failed_to_connect(exc):
        return TransportError("connection closed by the upstream", phase)
    kinds: list[tuple[type[BaseException], str]] = [
        (PoolTimeoutError, "pool timeout"),
        (ReadTimeoutError, "read timeout"),
        (WriteTimeoutError, "write timeout"),
        (RequestTimeoutError, "read timeout"),
        (ConnectError, "connection refused or unreachable"),
        (NetworkError, "connection closed by the upstream"),
        (DecodeError, "invalid HTTP response"),
    ]
    for kind_class, kind in kinds:
        if isinstance(exc, kind_class):
            return TransportError(kind, phase)
    return TransportError("connection failure", phase)


def _failed_to_connect(exc: BaseException) -> bool:
    """Return True when the error happened while opening the connection.

    pyreqwest 0.15 raises ConnectTimeoutError for a response that never
    came and ConnectError for a connection the upstream closed, so the
    phase is read from the cause chain: only a failure to connect carries
    hyper's ``client error (Connect)`` cause. The first cause is skipped
    unread, because it contains the URL.
    """
    details = getattr(exc, "details", None)
    causes = details.get("causes", []) if isinstance(details, dict) else []
    return any(
        isinstance(cause, dict) and cause.get("message") == CONNECT_CAUSE
        for cause in causes[1:]
    )


class _Exchange:
    """The async context manager ``ReqwestTransport.open`` returns.

    A class rather than ``@asynccontextmanager``, whose generator costs a
    few microseconds per request more.
    """

    __slots__ = ("_request",)

    def __init__(self, request: StreamRequest) -> None:
        self._request = request

    async def __aenter__(self) -> UpstreamResponse:
        try:
            response = await self._request.__aenter__()
        except PyreqwestError as exc:
            raise _translate(exc, "request") from None
        try:
            return _ReqwestResponse(response)
        except BaseException:
            await self._request.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self._request.__aexit__(None, None, None)


class ReqwestTransport(Transport):
    """pyreqwest client with transparency settings and the provider's timeouts."""

    def __init__(self, timeouts: Timeouts) -> None:
        self._client: Client = (
            ClientBuilder()
            .gzip(False)
            .brotli(False)
            .zstd(False)
            .deflate(False)
            .follow_redirects(False)
            .referer(False)
            .default_cookie_store(False)
            .connect_timeout(timedelta(seconds=timeouts.connect))
            .read_timeout(timedelta(seconds=timeouts.read))
            .pool_timeout(timedelta(seconds=timeouts.pool))
            .pool_idle_timeout(timedelta(seconds=60))
            .http1_only()
            .build()
        )

    def open(
        self, method: str, url: str, headers: list[tuple[str, str]], body: Body
    ) -> _Exchange:
        builder = self._client.request(method, url).headers(headers)
        builder = builder.streamed_read_buffer_limit(0)
        if isinstance(body, bytes):
            builder = builder.body_bytes(body)
        elif body is not None:
            builder = builder.body_stream(body)
        return _Exchange(builder.build_streamed())

    async def close(self) -> None:
        await self._client.close()
