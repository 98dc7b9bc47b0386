"""``hmac_signed``: an HMAC over the exact bytes sent, as exchanges such as Binance use.

Per request the module:

1. drops any timestamp and signature the agent sent, in the query and the
   headers;
2. sets the timestamp (Unix time in milliseconds) as a query parameter or a
   header;
3. signs the payload: the query string exactly as it goes on the wire
   (timestamp included, signature not), the body, or the query immediately
   followed by the body with no separator (``query+body``);
4. writes the lower-case hex signature as the last query parameter or as a
   header, and the API key into ``key_header``.

The query is signed in its wire form. Characters that the HTTP client would
percent-encode on the way out (``"``, ``'``, ``<``, ``>``, spaces, controls
and non-ASCII bytes) are encoded first, so the signed bytes and the sent
bytes are the same.

The secret never leaves this module; only the signature does.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Literal, Self

from pydantic import model_validator

from outpost.auth.base import (
    AppliedCredential,
    AuthConfig,
    AuthContext,
    AuthModule,
    read_secret,
    register,
)
from outpost.http import OutgoingRequest, query_param_name

DIGESTS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}

# Bytes that the URL parser of the HTTP client percent-encodes in a query
# (the WHATWG query percent-encode set for special schemes).
_WIRE_ESCAPES = {ord(char): f"%{ord(char):02X}" for char in "\"'<> "}


class HmacSignedConfig(AuthConfig):
    """``hmac_signed``: where key, timestamp and signature go; what is signed."""

    type: Literal["hmac_signed"]
    secret_env: str
    key_env: str | None = None
    key_header: str | None = None
    signature_header: str | None = None
    signature_param: str | None = None
    timestamp_header: str | None = None
    timestamp_param: str | None = None
    digest: Literal["sha256", "sha384", "sha512"] = "sha256"
    payload: Literal["query", "body", "query+body"] = "query"

    @model_validator(mode="after")
    def _check_places(self) -> Self:
        if (self.signature_header is None) == (self.signature_param is None):
            raise ValueError(
                "give exactly one of 'signature_header' or 'signature_param'"
            )
        if (self.timestamp_header is None) == (self.timestamp_param is None):
            raise ValueError(
                "give exactly one of 'timestamp_header' or 'timestamp_param'"
            )
        if (self.key_env is None) != (self.key_header is None):
            raise ValueError(
                "give 'key_env' and 'key_header' together, or neither when the "
                "API sends no key beside the signature"
            )
        return self


def wire_query(query: str) -> str:
    """Return ``query`` with the bytes the HTTP client would escape escaped."""
    escaped = query.translate(_WIRE_ESCAPES)
    if escaped.isascii() and escaped.isprintable():
        return escaped
    return "".join(
        char if char.isascii() and char.isprintable() else _escape_char(char)
        for char in escaped
    )


def _escape_char(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def remove_query_param(query: str, name: str) -> str:
    """Return ``query`` without any ``name`` parameter, the rest byte for byte."""
    if not query:
        return query
    return "&".join(part for part in query.split("&") if query_param_name(part) != name)


def signing_payload(query: str, body: bytes, payload: str) -> bytes:
    """Return the bytes that are signed for a payload mode."""
    if payload == "query":
        return query.encode("ascii")
    if payload == "body":
        return body
    return query.encode("ascii") + body


def now_ms() -> int:
    """Return the current Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


@register
class HmacSignedAuth(AuthModule):
    """``hmac_signed``: API key header, timestamp and HMAC signature."""

    type_name = "hmac_signed"
    config_model = HmacSignedConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, HmacSignedConfig)
        self.secret = read_secret(env, config.secret_env)
        self.key = read_secret(env, config.key_env) if config.key_env else None
        self.settings = config
        self.hash = DIGESTS[config.digest]
        self.signs_body = config.payload != "query"
        #: Returns the timestamp to send; tests replace it to check known signatures.
        self.clock: Callable[[], int] = now_ms

        headers = [config.key_header, config.signature_header, config.timestamp_header]
        params = [config.signature_param, config.timestamp_param]
        self.injected_headers = frozenset(name.lower() for name in headers if name)
        self.injected_query_params = frozenset(name for name in params if name)

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        config = self.settings
        query = wire_query(request.query)
        for name in self.injected_query_params:
            query = remove_query_param(query, name)

        timestamp = str(self.clock())
        if config.timestamp_param:
            request.query = query
            request.set_query_param(config.timestamp_param, timestamp)
            query = request.query
        else:
            assert config.timestamp_header is not None
            request.set_header(config.timestamp_header, timestamp)

        body = request.body or b""
        message = signing_payload(query, body, config.payload)
        signature = hmac.new(
            self.secret.reveal().encode(), message, self.hash
        ).hexdigest()

        if config.signature_param:
            request.query = query
            request.set_query_param(config.signature_param, signature)
        else:
            assert config.signature_header is not None
            request.query = query
            request.set_header(config.signature_header, signature)
        if self.key is not None and config.key_header:
            request.set_header(config.key_header, self.key.reveal())
        return None
