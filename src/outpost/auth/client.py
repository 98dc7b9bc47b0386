"""A small HTTP client for token endpoints (OAuth 2.0, GitHub App, mint paths).

Auth modules that mint credentials call a token endpoint now and then; they
never share the per-provider forwarding client, whose settings serve
byte-transparent streaming. This client sends each request through an
:class:`~outpost.proxy.http1.Http1Transport` for the URL's origin, reads at
most :data:`MAX_RESPONSE_BYTES` of a response and gives up when the whole
exchange takes longer than its timeout. It follows no redirects and keeps no
cookies.

It must never put the request body, the response body or a URL with
credentials into an exception: its errors name only the kind of failure, and
callers turn them into :class:`~outpost.auth.base.CredentialError` messages.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urlsplit

import orjson

from outpost.auth.base import CredentialError
from outpost.config.models import Timeouts
from outpost.config.urls import parse_base_url
from outpost.proxy.http1 import Http1Transport
from outpost.proxy.transport import TransportError, UpstreamResponse

MAX_RESPONSE_BYTES = 256 * 1024
DEFAULT_TIMEOUT = 10.0
# The TransportError kind Http1Transport raises when it cannot connect.
CONNECT_FAILED_KIND = "connection refused or unreachable"
# Characters sent as they are in the target: printable ASCII except space and
# ``"#<>`{}``. Others, such as non-ASCII text, are percent-encoded as UTF-8,
# and an existing ``%XX`` is kept.
_TARGET_SAFE = "".join(
    chr(code) for code in range(0x21, 0x7F) if chr(code) not in '"#<>`{}'
)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """One token endpoint response: status, lower-case headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json_object(self, endpoint: str) -> dict[str, object]:
        """Parse the body as a JSON object or raise CredentialError.

        The body itself never reaches the message, because a token endpoint
        may echo credentials back.
        """
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise CredentialError(
                f"{endpoint} returned a body that is not JSON (status {self.status})"
            ) from None
        if not isinstance(data, dict):
            raise CredentialError(
                f"{endpoint} returned JSON that is not an object (status {self.status})"
            )
        return data


class TokenClient:
    """Sends token requests. Each auth module has its own instance.

    ``timeout`` is in seconds and bounds the whole exchange: connecting,
    sending the request and reading the full response.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        # One transport, with its keep-alive pool, per scheme://host:port.
        self._transports: dict[str, Http1Transport] = {}

    async def post(
        self, url: str, headers: list[tuple[str, str]], body: bytes, endpoint: str
    ) -> TokenResponse:
        """POST ``body`` to ``url`` and return the response, whatever its status.

        ``endpoint`` names the endpoint in error messages, for example
        ``"token endpoint of provider 'crm'"``. Transport failures raise
        CredentialError naming only the failure's kind.
        """
        transport, target_url = self._route(url, endpoint)
        try:
            async with asyncio.timeout(self.timeout):
                exchange = transport.open("POST", target_url, headers, body)
                async with exchange as response:
                    data = await _read_limited(response, endpoint)
                    names = dict(response.headers)
                    return TokenResponse(response.status, names, data)
        except TimeoutError:
            raise CredentialError(f"{endpoint} timed out; retry later") from None
        except TransportError as exc:
            if exc.is_timeout:
                raise CredentialError(f"{endpoint} timed out; retry later") from None
            if exc.kind == CONNECT_FAILED_KIND:
                raise CredentialError(
                    f"{endpoint} is unreachable; retry later"
                ) from None
            raise CredentialError(
                f"{endpoint} failed ({exc.kind}); retry later"
            ) from None

    def _route(self, url: str, endpoint: str) -> tuple[Http1Transport, str]:
        """Return the transport for ``url``'s origin and the URL it accepts.

        The transport takes its origin, spelt as :attr:`BaseUrl.origin` spells
        it (no default port, IPv6 in brackets), followed by the target.
        """
        try:
            parts = urlsplit(url)
            # parse_base_url rejects a query, so it gets the origin alone.
            base = parse_base_url(_origin_of(parts))
        except ValueError:
            # The ValueError's text quotes the URL, so it is not chained.
            raise CredentialError(
                f"{endpoint} has an invalid URL; check its scheme, host and port"
            ) from None
        transport = self._transports.get(base.origin)
        if transport is None:
            timeouts = Timeouts(
                connect=self.timeout,
                read=self.timeout,
                write=self.timeout,
                pool=self.timeout,
            )
            transport = Http1Transport(base, timeouts)
            self._transports[base.origin] = transport
        target = quote(parts.path or "/", safe=_TARGET_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_TARGET_SAFE)
        return transport, base.origin + target

    async def close(self) -> None:
        """Close the pooled connections of every origin used so far."""
        transports = list(self._transports.values())
        self._transports.clear()
        for transport in transports:
            await transport.close()


def _origin_of(parts: SplitResult) -> str:
    """Return ``scheme://host[:port]`` of a split URL, without user info."""
    host = parts.hostname
    if not host:
        raise ValueError("URL has no host name")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


async def _read_limited(response: UpstreamResponse, endpoint: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await response.read_chunk()
        if chunk is None:
            return b"".join(parts)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise CredentialError(
                f"{endpoint} returned more than {MAX_RESPONSE_BYTES} bytes"
            )
        parts.append(chunk)
