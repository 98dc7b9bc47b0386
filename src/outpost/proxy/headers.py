"""Which headers cross Outpost, in each direction.

Request side, the upstream must never see: hop-by-hop headers (RFC 9110
section 7.6.1) and every header the agent named in ``Connection``; ``Host``
(Outpost sets it from ``base_url``); Outpost's own control headers; headers
that frameworks use to rewrite the URL, host, scheme or client address; any
``Proxy-*`` header; and every credential header the agent brought, because
SDKs insist on sending a dummy key. Response side, hop-by-hop headers and
those named in the upstream's ``Connection`` are dropped; everything else,
repeated ``Set-Cookie`` lines included, passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable

from outpost.errors import BadRequestError, UpstreamError

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Headers the proxy handles itself or that only concern the agent's hop.
PROXY_CONTROL = frozenset(
    {"host", "expect", "x-provider", "x-broker", "x-outpost-auth"}
)

# Frameworks behind the upstream trust these to rewrite the URL, host, scheme
# or client address; an agent must not be able to set them.
ROUTING_OVERRIDES = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-cluster-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-original-host",
        "x-original-uri",
        "x-host",
        "x-http-host-override",
    }
)

# Credential headers an agent may carry; the provider's own auth module adds
# the real ones after this filter has run.
AGENT_CREDENTIALS = frozenset(
    {
        "authorization",
        "cookie",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "x-amz-credential",
        "x-amz-signature",
        "x-amz-signedheaders",
        "x-amz-algorithm",
    }
)

DROPPED_REQUEST_HEADERS = (
    HOP_BY_HOP | PROXY_CONTROL | ROUTING_OVERRIDES | AGENT_CREDENTIALS
)
# Outpost sets the X-Proxy-* and X-Outpost-* response headers itself, so an
# upstream copy would be a second, conflicting value the agent might trust.
DROPPED_RESPONSE_HEADERS = HOP_BY_HOP | {
    "proxy-authenticate",
    "proxy-authentication-info",
    "x-proxy-provider",
    "x-proxy-cache",
}
DROPPED_RESPONSE_PREFIXES = ("proxy-", "x-outpost-")
# The upstream's own request id, renamed so that X-Request-Id has one value.
UPSTREAM_REQUEST_ID = "x-upstream-request-id"


def connection_tokens(values: Iterable[str]) -> set[str]:
    """Return the lower-case header names listed in ``Connection`` values."""
    names: set[str] = set()
    for value in values:
        for token in value.split(","):
            token = token.strip().lower()
            if token:
                names.add(token)
    return names


DROPPED_REQUEST_PREFIXES = ("x-forwarded-", "proxy-")


def is_dropped_request_header(name: str, extra: frozenset[str]) -> bool:
    """Return True when a lower-case request header must not go upstream.

    ``_`` counts as ``-``, because CGI and WSGI servers map both to ``_`` in
    the variable name, so the upstream would read ``X_Original_URL`` as
    ``X-Original-URL``.
    """
    name = name.replace("_", "-")
    return (
        name in DROPPED_REQUEST_HEADERS
        or name in extra
        or name.startswith(DROPPED_REQUEST_PREFIXES)
    )


def _named_in_connection(headers: list[tuple[str, str]]) -> set[str]:
    """Return the names to drop for ``Connection`` and ``Transfer-Encoding``.

    One scan finds both: the names the ``Connection`` values list, plus
    ``content-length`` when a ``Transfer-Encoding`` header is present.
    """
    connection: list[str] = []
    is_chunked = False
    for name, value in headers:
        if name == "connection":
            connection.append(value)
        elif name == "transfer-encoding":
            is_chunked = True
    named = connection_tokens(connection) if connection else set()
    if is_chunked:
        named.add("content-length")
    return named


def filter_request_headers(
    headers: Iterable[tuple[str, str]], extra: frozenset[str]
) -> list[tuple[str, str]]:
    """Return the agent's headers that may go upstream, in their order.

    ``extra`` contains provider-specific names to drop as well: the headers the
    auth module sets and the method-override headers.
    """
    headers = list(headers)
    # With a chunked body, a length next to it is a smuggling attempt.
    named = _named_in_connection(headers)
    # The checks of is_dropped_request_header, inlined: this runs per header
    # of every request.
    kept = [
        (name, value)
        for name, value in headers
        if (key := name.replace("_", "-")) not in DROPPED_REQUEST_HEADERS
        and key not in extra
        and name not in named
        and not key.startswith(DROPPED_REQUEST_PREFIXES)
    ]
    if all(value.isascii() for _, value in kept):
        return kept
    return [(name, _as_utf8(name, value)) for name, value in kept]


def _as_utf8(name: str, value: str) -> str:
    """Return a header value decoded from Latin-1 as UTF-8 instead.

    The server hands header bytes over as Latin-1 text, and the upstream
    client writes text as UTF-8, so a value with bytes above 0x7F would be
    encoded twice. Decoding as UTF-8 here makes the bytes sent equal the
    bytes received. Bytes that are not UTF-8 cannot cross unchanged, so they
    are refused instead of altered.
    """
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError(
            f"header {name!r} contains bytes that are neither ASCII nor UTF-8; "
            "send its value as ASCII, for example percent-encoded",
            reason="header_not_utf8",
        ) from None


def filter_response_headers(
    headers: Iterable[tuple[str, str]], stripped: frozenset[str]
) -> list[tuple[str, str]]:
    """Return the upstream's headers that go back to the agent, in their order.

    With both ``Transfer-Encoding`` and ``Content-Length``, the transfer
    coding framed the body. RFC 9112 section 6.3 requires dropping the
    length then, and forwarding it would cut the body short. The upstream's
    ``X-Request-Id`` comes back as ``X-Upstream-Request-Id``, because
    Outpost sends its own. A length the upstream repeated, as a second line
    or a list such as ``5, 5``, is sent once.
    """
    headers = list(headers)
    named = _named_in_connection(headers)
    if "content-length" in named:
        _check_transfer_coding(headers)
    kept = [
        (UPSTREAM_REQUEST_ID if name == "x-request-id" else name, value)
        for name, value in headers
        if name not in DROPPED_RESPONSE_HEADERS
        and name not in named
        and name not in stripped
        and not name.startswith(DROPPED_RESPONSE_PREFIXES)
    ]
    lengths = [value for name, value in kept if name == "content-length"]
    if len(lengths) > 1 or (lengths and "," in lengths[0]):
        return _with_single_length(kept, lengths)
    return kept


def _check_transfer_coding(headers: list[tuple[str, str]]) -> None:
    """Raise unless every transfer coding of the response is ``chunked``.

    The upstream client removes only the chunked coding, and the agent never
    sees ``Transfer-Encoding``, so a body still under another coding (such as
    ``gzip, chunked``) would arrive as undeclared compressed bytes.
    """
    for name, value in headers:
        if name != "transfer-encoding":
            continue
        codings = [coding.strip().lower() for coding in value.split(",")]
        if any(coding not in ("chunked", "") for coding in codings):
            raise UpstreamError(
                f"the provider's response uses the transfer coding {value!r}, "
                "which Outpost cannot relay; only chunked is supported",
                metadata={"kind": "unsupported transfer coding"},
            )


def _with_single_length(
    headers: list[tuple[str, str]], lengths: list[str]
) -> list[tuple[str, str]]:
    """Return ``headers`` with one ``Content-Length`` line of one value.

    The upstream client rejects repeated lengths, so this guards only
    responses that reach the filter another way, such as from the cache.
    Every listed value is the same there, because differing values were
    always rejected (RFC 9110 section 8.6).
    """
    length = lengths[0].split(",", 1)[0].strip()
    single = [(name, value) for name, value in headers if name != "content-length"]
    return [("content-length", length), *single]
