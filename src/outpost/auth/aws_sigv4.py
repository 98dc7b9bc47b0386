"""``aws_sigv4``: AWS Signature Version 4, signed again with Outpost's keys.

The agent signs with dummy keys for Outpost's address; Outpost drops that
signature (the ``Authorization`` and ``X-Amz-*`` signing headers, and the
presigned-URL query parameters) and signs the request that actually goes
upstream, following the SigV4 documentation ("Create a signed AWS API
request", AWS General Reference):

- canonical URI: the path exactly as sent for S3; every other service gets
  each segment URI-encoded a second time, as AWS requires;
- canonical query: names and values decoded, encoded again with only
  ``A-Z a-z 0-9 - _ . ~`` left bare, and sorted;
- signed headers: ``host``, every ``x-amz-*`` header, ``content-type`` and
  ``content-md5``; values trimmed with inner runs of spaces collapsed;
- payload hash: SHA-256 of the body when it is buffered. S3 uploads can
  stream instead (``service: s3``): the agent's own ``x-amz-content-sha256``
  is kept when it is a hex hash or an unsigned marker, because S3 checks it
  against the bytes it receives, and ``UNSIGNED-PAYLOAD`` is sent otherwise.

Region and service come from the configuration, else from the credential
scope of the agent's own signature (``Credential=KEY/DATE/REGION/SERVICE/
aws4_request``). Path-style S3 addressing keeps the bucket in the path, so
the signed host is always ``base_url``'s host.

The secret access key never leaves this module, and the signing key derived
from it is cached per day, region and service only in memory.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote, unquote

from pydantic import field_validator

from outpost.auth.base import (
    AppliedCredential,
    AuthConfig,
    AuthContext,
    AuthModule,
    CredentialError,
    read_secret,
    read_secrets,
    register,
)
from outpost.http import Header, OutgoingRequest, query_param_name

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
UNSIGNED_MARKERS = frozenset({UNSIGNED_PAYLOAD, "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
SIGNED_STREAMING_PREFIX = "STREAMING-AWS4-HMAC-SHA256"
HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
SCOPE_PART = re.compile(r"[a-z0-9-]{1,64}")
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]*/\d{8}/([^/,\s]+)/([^/,\s]+)/")

PRESIGNED_PARAMS = frozenset(
    {
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    }
)
SIGNED_PLAIN_HEADERS = frozenset({"host", "content-type", "content-md5"})


class AwsSigV4Config(AuthConfig):
    """``aws_sigv4``: the real keys, and optionally a fixed region and service."""

    type: Literal["aws_sigv4"]
    access_key_id_env: str
    secret_access_key_env: str
    session_token_env: str | None = None
    region: str | None = None
    service: str | None = None

    @field_validator("region", "service")
    @classmethod
    def _check_scope_part(cls, value: str | None) -> str | None:
        if value is not None and not SCOPE_PART.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an AWS region or service name; use lower-case "
                "letters, digits and '-', for example us-east-1 or s3"
            )
        return value


def canonical_uri(path: str, service: str) -> str:
    """Return the canonical URI of an already percent-encoded path."""
    path = path or "/"
    if service == "s3":
        return path
    return quote(path, safe="/~")


def canonical_query(query: str) -> str:
    """Return the sorted, uniformly encoded query that SigV4 signs."""
    pairs = []
    for part in query.split("&") if query else []:
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append(
            (quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~"))
        )
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_headers(headers: list[Header]) -> tuple[str, str]:
    """Return the canonical header block and the signed header list."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        if name in SIGNED_PLAIN_HEADERS or name.startswith("x-amz-"):
            values.setdefault(name, []).append(" ".join(value.split()))
    names = sorted(values)
    block = "".join(f"{name}:{','.join(values[name])}\n" for name in names)
    return block, ";".join(names)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """Derive the SigV4 signing key for one day, region and service."""
    key = _hmac(f"AWS4{secret}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def agent_scope(headers: list[Header], query: str) -> tuple[str, str] | None:
    """Return (region, service) from the agent's own SigV4 credential scope."""
    for name, value in headers:
        if name == "authorization" and value.startswith(ALGORITHM):
            match = CREDENTIAL_SCOPE.search(value)
            if match:
                return match.group(1), match.group(2)
    for part in query.split("&") if query else []:
        if query_param_name(part) == "X-Amz-Credential":
            scope = unquote(part.partition("=")[2]).split("/")
            if len(scope) == 5:
                return scope[2], scope[3]
    return None


def remove_presigned_params(query: str) -> str:
    """Return ``query`` without presigned-URL signing parameters."""
    if not query:
        return query
    parts = query.split("&")
    return "&".join(p for p in parts if query_param_name(p) not in PRESIGNED_PARAMS)


@register
class AwsSigV4Auth(AuthModule):
    """``aws_sigv4``: drops the agent's signature and signs with real keys."""

    type_name = "aws_sigv4"
    config_model = AwsSigV4Config
    injected_headers = frozenset(
        {"authorization", "x-amz-date", "x-amz-content-sha256", "x-amz-security-token"}
    )
    injected_query_params = PRESIGNED_PARAMS

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, AwsSigV4Config)
        self.access_key_id, self.secret_access_key = read_secrets(
            env, [config.access_key_id_env, config.secret_access_key_env]
        )
        self.session_token = (
            read_secret(env, config.session_token_env)
            if config.session_token_env
            else None
        )
        self.region = config.region
        self.service = config.service
        # Only S3 checks the payload hash itself, so only S3 bodies may stream.
        self.signs_body = config.service != "s3"
        #: Returns the signing time; tests replace it to check known signatures.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._keys: dict[tuple[str, str, str], bytes] = {}

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        if not request.host:
            raise CredentialError("the request has no upstream host to sign")
        region, service = self._scope(request, context)
        request.query = remove_presigned_params(request.query)
        now = self.clock().astimezone(UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]

        for name in self.injected_headers:
            request.remove_header(name)
        request.set_header("host", request.host)
        request.set_header("x-amz-date", amz_date)
        payload_hash = self._payload_hash(request, service, context)
        if service == "s3" or payload_hash == UNSIGNED_PAYLOAD:
            request.set_header("x-amz-content-sha256", payload_hash)
        if self.session_token is not None:
            request.set_header("x-amz-security-token", self.session_token.reveal())

        header_block, signed_headers = canonical_headers(request.headers)
        canonical = "\n".join(
            [
                request.method,
                canonical_uri(request.path, service),
                canonical_query(request.query),
                header_block,
                signed_headers,
                payload_hash,
            ]
        )
        scope = f"{date}/{region}/{service}/aws4_request"
        string_to_sign = "\n".join(
            [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = self._signing_key(date, region, service)
        signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        request.set_header(
            "authorization",
            f"{ALGORITHM} Credential={self.access_key_id.reveal()}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}",
        )
        return None

    def _scope(self, request: OutgoingRequest, context: AuthContext) -> tuple[str, str]:
        found = agent_scope(request.agent_headers, request.query)
        region = self.region or (found[0] if found else None)
        service = self.service or (found[1] if found else None)
        if region is None or service is None:
            raise CredentialError(
                f"provider {context.provider!r} has no AWS region and service: set "
                "'region' and 'service' in its auth block, or sign requests with "
                "any key so Outpost can read them from the credential scope"
            )
        if not SCOPE_PART.fullmatch(region) or not SCOPE_PART.fullmatch(service):
            raise CredentialError(
                "the agent's SigV4 credential scope names an invalid region or "
                "service; use lower-case letters, digits and '-'"
            )
        return region, service

    def _payload_hash(
        self, request: OutgoingRequest, service: str, context: AuthContext
    ) -> str:
        claimed = next(
            (v for n, v in request.agent_headers if n == "x-amz-content-sha256"), ""
        )
        if claimed.startswith(SIGNED_STREAMING_PREFIX):
            raise CredentialError(
                f"provider {context.provider!r} cannot re-sign chunk-signed "
                f"uploads ({claimed}); configure the SDK to send unsigned or "
                "whole-body payloads"
            )
        if claimed in UNSIGNED_MARKERS:
            return claimed
        if request.body is not None:
            return hashlib.sha256(request.body).hexdigest()
        if not _has_body(request.agent_headers):
            return EMPTY_SHA256
        if service == "s3" and HEX_SHA256.fullmatch(claimed):
            return claimed
        return UNSIGNED_PAYLOAD

    def _signing_key(self, date: str, region: str, service: str) -> bytes:
        cache_key = (date, region, service)
        key = self._keys.get(cache_key)
        if key is None:
            if len(self._keys) > 16:
                self._keys.clear()
            key = signing_key(self.secret_access_key.reveal(), date, region, service)
            self._keys[cache_key] = key
        return key


def _has_body(headers: list[Header]) -> bool:
    for name, value in headers:
        if name == "transfer-encoding":
            return True
        if name == "content-length" and value.strip() not in ("", "0"):
            return True
    return False
