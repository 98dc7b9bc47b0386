"""A small HTTP client for token endpoints (OAuth 2.0, GitHub App, mint paths).

Auth modules that mint credentials call a token endpoint now and then; they
never share the per-provider forwarding client, whose settings serve
byte-transparent streaming. This client reads at most
:data:`MAX_RESPONSE_BYTES` of a response and gives up after a fixed timeout.

It must never put the request body, the response body or a URL with
credentials into an exception: its errors name only the kind of failure, and
callers turn them into :class:`~outpost.auth.base.CredentialError` messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import orjson
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import ConnectError, PyreqwestError, RequestTimeoutError
from pyreqwest.response import ResponseBodyReader

from outpost.auth.base import CredentialError

MAX_RESPONSE_BYTES = 256 * 1024
DEFAULT_TIMEOUT = 10.0


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
    """Sends token requests; one instance per auth module, built on first use."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._client: Client | None = None

    def _get_client(self) -> Client:
        if self._client is None:
            self._client = (
                ClientBuilder()
                .follow_redirects(False)
                .default_cookie_store(False)
                .referer(False)
                .connect_timeout(timedelta(seconds=self.timeout))
                .timeout(timedelta(seconds=self.timeout))
                .build()
            )
        return self._client

    async def post(
        self, url: str, headers: list[tuple[str, str]], body: bytes, endpoint: str
    ) -> TokenResponse:
        """POST ``body`` to ``url`` and return the response, whatever its status.

        ``endpoint`` names the endpoint in error messages, for example
        ``"token endpoint of provider 'crm'"``. Transport failures raise
        CredentialError naming only the failure's kind.
        """
        builder = self._get_client().post(url).headers(headers).body_bytes(body)
        try:
            async with builder.build_streamed() as response:
                data = await _read_limited(response.body_reader, endpoint)
                names = {
                    str(name).lower(): str(value)
                    for name, value in response.headers.items()
                }
                return TokenResponse(response.status, names, data)
        except RequestTimeoutError:
            raise CredentialError(f"{endpoint} timed out; retry later") from None
        except ConnectError:
            raise CredentialError(f"{endpoint} is unreachable; retry later") from None
        except PyreqwestError as exc:
            kind = type(exc).__name__
            raise CredentialError(f"{endpoint} failed ({kind}); retry later") from None

    async def close(self) -> None:
        """Close the pooled connections, if any were opened."""
        if self._client is not None:
            await self._client.close()
            self._client = None


async def _read_limited(reader: ResponseBodyReader, endpoint: str) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = await reader.read_chunk()
        if chunk is None:
            return b"".join(parts)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise CredentialError(
                f"{endpoint} returned more than {MAX_RESPONSE_BYTES} bytes"
            )
        parts.append(bytes(chunk))
