"""The one error tree for responses that Outpost makes itself.

Every proxy-made response is a :class:`ProxyError`: one HTTP status, one stable
``code``, a message that names what failed and what to do, and an optional
``reason`` that names the rule that decided. :func:`error_body` is the only place
that turns an error into the JSON envelope. Messages never carry a secret,
an exception's raw text or an upstream URL.
"""

from __future__ import annotations

from typing import Any

import orjson


class ProxyError(Exception):
    """A response that Outpost makes instead of forwarding."""

    status = 500
    code = "PROXY_INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = metadata
        self.headers = headers or []


class BadRequestError(ProxyError):
    """The request target or framing is ambiguous or malformed."""

    status = 400
    code = "PROXY_BAD_REQUEST"


class HostDeniedError(ProxyError):
    """No host entry covers the caller's address."""

    status = 403
    code = "PROXY_HOST_DENIED"


class AuthRequiredError(ProxyError):
    """The caller's host needs a pre-shared key and none valid was given."""

    status = 401
    code = "PROXY_AUTH_REQUIRED"

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.headers.append(("www-authenticate", 'X-Outpost-Auth realm="outpost"'))


class UnknownProviderError(ProxyError):
    """The selected provider does not exist or is disabled."""

    status = 400
    code = "PROXY_UNKNOWN_PROVIDER"


class ProviderDeniedError(ProxyError):
    """The caller may not use the selected provider."""

    status = 403
    code = "PROXY_PROVIDER_DENIED"


class ProviderUnavailableError(ProxyError):
    """The provider is configured but cannot serve (missing credential)."""

    status = 503
    code = "PROXY_PROVIDER_UNAVAILABLE"


class PathDeniedError(ProxyError):
    """The path matches a deny pattern."""

    status = 403
    code = "PROXY_PATH_DENIED"


class NoRouteError(ProxyError):
    """No allow rule matches the path."""

    status = 404
    code = "PROXY_NO_ROUTE"


class MethodNotAllowedError(ProxyError):
    """An allow rule matches the path but not the method."""

    status = 405
    code = "PROXY_METHOD_NOT_ALLOWED"


class SensitiveDeniedError(ProxyError):
    """The route is sensitive and the caller may not make sensitive calls."""

    status = 403
    code = "PROXY_SENSITIVE_DENIED"


class PayloadTooLargeError(ProxyError):
    """A body that must be buffered exceeds its configured limit."""

    status = 413
    code = "PROXY_PAYLOAD_TOO_LARGE"


class IdempotencyInFlightError(ProxyError):
    """The same idempotency key is being processed right now."""

    status = 409
    code = "PROXY_IDEMPOTENCY_IN_FLIGHT"


class IdempotencyMismatchError(ProxyError):
    """The idempotency key was used before with another request."""

    status = 422
    code = "PROXY_IDEMPOTENCY_MISMATCH"


class RateLimitedError(ProxyError):
    """No rate-limit token became free within the queue timeout."""

    status = 429
    code = "PROXY_RATE_LIMITED"


class UpstreamRateLimitedError(ProxyError):
    """The upstream asked for a cooldown that outlasts the queue timeout."""

    status = 429
    code = "PROXY_UPSTREAM_RATE_LIMITED"


class CredentialUnavailableError(ProxyError):
    """The credential could not be produced (mint failed, token missing)."""

    status = 502
    code = "PROXY_AUTH_ERROR"


class UpstreamError(ProxyError):
    """The upstream could not be reached or broke the connection."""

    status = 502
    code = "PROXY_UPSTREAM_ERROR"


class UpstreamTimeoutError(ProxyError):
    """The upstream did not connect or respond within its timeout."""

    status = 504
    code = "PROXY_UPSTREAM_TIMEOUT"


class StoreUnavailableError(ProxyError):
    """The state store is unreachable; Outpost fails closed."""

    status = 503
    code = "PROXY_STORE_UNAVAILABLE"


class NotFoundError(ProxyError):
    """A management path that does not exist."""

    status = 404
    code = "PROXY_NOT_FOUND"


def error_body(error: ProxyError) -> bytes:
    """Render the JSON envelope for ``error``."""
    return orjson.dumps(
        {
            "status": "FAILURE",
            "error": {
                "code": error.code,
                "message": error.message,
                "metadata": error.metadata,
            },
        }
    )


def retry_after_headers(seconds: float) -> list[tuple[str, str]]:
    """Return a ``Retry-After`` header: whole seconds, at least 1."""
    return [("retry-after", str(max(1, int(-(-seconds // 1)))))]
