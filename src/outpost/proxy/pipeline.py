"""The request pipeline: decide, inject, forward, stream back.

The steps run in a fixed order and every rejection happens before a single
byte goes upstream: parse and canonicalise the target, identify the caller,
check its pre-shared key, select the provider, apply the deny list, classify
the route, apply the sensitive gate, inject the credential, forward and
stream. The path the policy checked is the path that is forwarded; the
upstream origin always comes from ``base_url``; nothing the agent sends can
change either.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

from outpost.auth.base import AppliedCredential, AuthContext, CredentialError
from outpost.errors import (
    BadRequestError,
    CredentialUnavailableError,
    PayloadTooLargeError,
    ProviderDeniedError,
    ProviderUnavailableError,
    ProxyError,
    StoreUnavailableError,
    UnknownProviderError,
    UpstreamError,
    UpstreamTimeoutError,
    error_body,
)
from outpost.http import OutgoingRequest
from outpost.policy.callers import Caller
from outpost.policy.canonical import canonicalize_path
from outpost.policy.routes import Route, check_method_override, check_sensitive
from outpost.proxy.accesslog import AccessRecord
from outpost.proxy.headers import filter_request_headers, filter_response_headers
from outpost.proxy.peek import peek_body
from outpost.proxy.runtime import ProviderRuntime, Runtime
from outpost.proxy.state import (
    CACHEABLE_METHODS,
    IDEMPOTENT_METHODS,
    MAX_CACHED_BODY,
    MAX_IDEMPOTENT_BODY,
    ResponseCache,
    StoredResponse,
    is_lookup_allowed,
    is_replayable,
    is_store_allowed,
    storable,
)
from outpost.proxy.transport import Body, TransportError, UpstreamResponse
from outpost.store.base import TakeResult

Scope = dict[str, Any]
Message = dict[str, Any]
Finish = Callable[[StoredResponse | None], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("outpost.proxy")

REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})


class ClientDisconnectedError(Exception):
    """The agent closed its connection before the exchange finished."""


class UpstreamBrokenError(Exception):
    """The upstream failed after the response had started; the connection is cut."""


class Exchange:
    """One request's parsed parts, shared by the pipeline steps."""

    __slots__ = (
        "caller",
        "extra_headers",
        "headers",
        "method",
        "path",
        "provider",
        "query",
        "raw_path",
        "receive",
        "record",
        "route",
        "scope",
        "send",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        self.query: str = scope["query_string"].decode("latin-1")
        self.headers: list[tuple[str, str]] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
        ]
        client = scope.get("client")
        peer = client[0] if client else ""
        self.record = AccessRecord(_request_id(self.headers), self.method, peer)
        self.record.query = self.query
        self.caller: Caller | None = None
        self.provider: ProviderRuntime | None = None
        self.route: Route | None = None
        self.path = ""
        self.extra_headers: list[tuple[str, str]] = []

    def header_values(self, name: str) -> list[str]:
        """Return every value of a lower-case header name, in order."""
        return [value for key, value in self.headers if key == name]


def _request_id(headers: list[tuple[str, str]]) -> str:
    for name, value in headers:
        if name == "x-request-id" and REQUEST_ID.fullmatch(value):
            return value
    # 32 random hex digits, like uuid4().hex but without building a UUID,
    # which costs about four times as much.
    return os.urandom(16).hex()


class Pipeline:
    """Runs the policy steps and the forwarding for every proxied request."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def handle(self, exchange: Exchange, selected: str | None) -> None:
        """Serve one request whose provider was selected or defaulted."""
        runtime = self.runtime
        record = exchange.record
        caller = exchange.caller
        assert caller is not None

        provider = self._select_provider(runtime, caller, selected, exchange)
        record.provider = provider.name
        path = exchange.path
        if ";" in path and not provider.allow_path_parameters:
            # Raises with the rule's own message.
            canonicalize_path(exchange.raw_path, allow_path_parameters=False)
        if selected is None and path.startswith("/p/"):
            path = _strip_provider_prefix(path)
        exchange.path = path
        record.path = path

        route = provider.routes.classify(exchange.method, path)
        route = check_method_override(
            route,
            exchange.method,
            path,
            exchange.headers,
            exchange.query,
            provider.routes,
        )
        record.category = route.category
        check_sensitive(route, caller)
        exchange.route = route

        if provider.missing_env:
            names = ", ".join(provider.missing_env)
            raise ProviderUnavailableError(
                f"provider {provider.name!r} has no credential: set {names} and "
                "restart Outpost",
                metadata={"missing_env": provider.missing_env},
            )
        await self.forward(exchange, provider)

    def _select_provider(
        self,
        runtime: Runtime,
        caller: Caller,
        selected: str | None,
        exchange: Exchange,
    ) -> ProviderRuntime:
        name = selected if selected is not None else _prefix_provider(exchange.path)
        if name is None:
            name = runtime.default_provider
        provider = runtime.providers.get(name.lower()) if name else None
        if provider is None:
            usable = sorted(p for p in runtime.providers if caller.may_use(p))
            shown = name if name is None else name[:64]
            raise UnknownProviderError(
                f"unknown provider {shown!r}; select one with the X-Provider header "
                "or a /p/<provider>/ path prefix",
                reason="unknown_provider",
                metadata={"providers": usable},
            )
        if not caller.may_use(provider.name):
            raise ProviderDeniedError(
                f"host {caller.id!r} may not use provider {provider.name!r}",
                reason="provider_not_granted",
            )
        return provider

    async def forward(self, exchange: Exchange, provider: ProviderRuntime) -> None:
        """Run the stateful steps, inject the credential, forward and stream."""
        runtime = self.runtime
        record = exchange.record
        route = exchange.route
        assert route is not None
        request = OutgoingRequest(
            method=exchange.method,
            path=provider.base.path_prefix + exchange.path,
            query=_escape_non_ascii(exchange.query),
            headers=filter_request_headers(
                exchange.headers, provider.dropped_request_headers
            ),
            host=provider.base.host_header,
            agent_headers=exchange.headers,
        )
        for name, value in provider.default_headers:
            request.set_header(name, value)

        reservation: tuple[str, str] | None = None
        idempotency_key = _idempotency_key(exchange)
        if idempotency_key is not None:
            whole = await self._read_whole_body(exchange, MAX_IDEMPOTENT_BODY)
            body: Body = whole
            reservation = await self._reserve(
                exchange, provider, idempotency_key, whole
            )
            if reservation is None:
                return
            if provider.auth is not None and provider.auth.signs_body:
                request.body = whole
        else:
            body = await self._request_body(exchange, provider, request)

        cache_key = await self._lookup_cache(exchange, provider, route)
        if record.cache == "HIT":
            return

        try:
            admission_started = time.perf_counter()
            limit = await runtime.limiter.admit(
                provider.name, route.category, provider.windows_for(route.category)
            )
            record.rate_limit_wait_ms = (time.perf_counter() - admission_started) * 1000
            if limit is not None:
                exchange.extra_headers = _rate_limit_headers(limit)
            finish = None
            if reservation is not None or cache_key is not None:
                finish = functools.partial(
                    self._record_result, exchange, route, reservation, cache_key
                )
            await self._exchange(exchange, provider, request, body, finish=finish)
        except BaseException:
            if reservation is not None:
                await runtime.idempotency.release(*reservation)
            raise

    async def _reserve(
        self,
        exchange: Exchange,
        provider: ProviderRuntime,
        idempotency_key: str,
        body: bytes,
    ) -> tuple[str, str] | None:
        """Reserve the key, or send the stored response and return None on a replay."""
        assert exchange.caller is not None
        guard = self.runtime.idempotency
        key = guard.key(provider.name, exchange.caller.id, idempotency_key)
        fingerprint = guard.fingerprint(
            exchange.method, exchange.path, exchange.query, body
        )
        outcome = await guard.reserve(key, fingerprint)
        if isinstance(outcome, StoredResponse):
            exchange.record.cache = "IDEMPOTENT-HIT"
            await self._replay(exchange, provider, outcome)
            return None
        return key, outcome

    async def _lookup_cache(
        self, exchange: Exchange, provider: ProviderRuntime, route: Route
    ) -> str | None:
        """Send a stored response, or return the key to store this one under.

        HEAD is served from the stored GET response (RFC 9111 section 4) but
        never stored, because its empty body would then be replayed to a GET.
        """
        if route.cache_ttl <= 0 or route.sensitive:
            return None
        if exchange.method not in CACHEABLE_METHODS:
            return None
        key = ResponseCache.key(provider.name, "GET", exchange.path, exchange.query)
        store_key = key if exchange.method == "GET" else None
        if not is_lookup_allowed(exchange.headers):
            exchange.record.cache = "BYPASS"
            return store_key if is_store_allowed(exchange.headers) else None

        stored = await self.runtime.cache.lookup(key, exchange.headers)
        if stored is not None:
            exchange.record.cache = "HIT"
            headers = stored.headers_with_age(time.time())
            await self._replay(exchange, provider, replace(stored, headers=headers))
            return None
        exchange.record.cache = "MISS"
        return store_key

    async def _record_result(
        self,
        exchange: Exchange,
        route: Route,
        reservation: tuple[str, str] | None,
        cache_key: str | None,
        captured: StoredResponse | None,
    ) -> None:
        """Store the idempotent result and the cacheable response, if any.

        A store outage here must not fail a response that is already under
        way. It is logged once, and an unfinished reservation expires.
        """
        with contextlib.suppress(StoreUnavailableError):
            await self._store_result(exchange, route, reservation, cache_key, captured)

    async def _store_result(
        self,
        exchange: Exchange,
        route: Route,
        reservation: tuple[str, str] | None,
        cache_key: str | None,
        captured: StoredResponse | None,
    ) -> None:
        runtime = self.runtime
        if reservation is not None:
            # NOTE: a response above MAX_CACHED_BODY is not captured, so its
            # key is released like a 5xx and a retry reaches the upstream again.
            if captured is not None and is_replayable(captured.status):
                await runtime.idempotency.complete(*reservation, captured)
            else:
                await runtime.idempotency.release(*reservation)
        if cache_key is None or captured is None:
            return
        decision = storable(
            captured.status, captured.headers, exchange.headers, route.cache_ttl
        )
        if decision is not None:
            ttl, vary = decision
            stored = replace(captured, vary=vary, stored_at=time.time())
            await runtime.cache.store(cache_key, stored, ttl)

    async def _exchange(
        self,
        exchange: Exchange,
        provider: ProviderRuntime,
        request: OutgoingRequest,
        body: Body,
        *,
        finish: Finish | None,
    ) -> None:
        """Forward one request and stream the response, then ``finish`` if given."""
        record = exchange.record
        applied = await self._inject(provider, request)
        url = provider.base.origin + request.target
        forward_started = time.perf_counter()
        try:
            async with provider.transport.open(
                request.method, url, request.headers, body
            ) as upstream:
                record.upstream_ms = (time.perf_counter() - forward_started) * 1000
                record.upstream_status = upstream.status
                upstream, body_read = await self._peek_for_auth(provider, upstream)
                await self._after_response(
                    exchange, provider, upstream, applied, body_read
                )
                headers = filter_response_headers(
                    upstream.headers, provider.stripped_response_headers
                )
                await self._stream(
                    exchange, provider, upstream.status, headers, upstream, finish
                )
        except TransportError as exc:
            if record.status:
                log.error(
                    "upstream failed mid-response request_id=%s provider=%s error=%s",
                    record.request_id,
                    provider.name,
                    exc.kind,
                )
                raise UpstreamBrokenError(exc.kind) from None
            raise _transport_error(provider, exc) from None

    async def _request_body(
        self, exchange: Exchange, provider: ProviderRuntime, request: OutgoingRequest
    ) -> Body:
        has_length = any(name == "content-length" for name, _ in exchange.headers)
        is_chunked = any(name == "transfer-encoding" for name, _ in exchange.headers)
        if not has_length and not is_chunked:
            return None
        if provider.auth is not None and provider.auth.signs_body:
            limit = self.runtime.settings.max_signed_body_bytes
            body = await self._read_whole_body(exchange, limit)
            request.body = body
            request.remove_header("content-length")
            return body
        return self._stream_body(exchange)

    async def _stream_body(self, exchange: Exchange) -> AsyncIterator[bytes]:
        record = exchange.record
        while True:
            message = await exchange.receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnectedError
            chunk = message.get("body", b"")
            if chunk:
                record.bytes_in += len(chunk)
                yield chunk
            if not message.get("more_body", False):
                return

    async def _read_whole_body(self, exchange: Exchange, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self._stream_body(exchange):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLargeError(
                    f"request body exceeds {limit} bytes, the most Outpost buffers "
                    "for body signing or idempotency; send a smaller body",
                    reason="body_too_large",
                    metadata={"limit": limit},
                )
            parts.append(chunk)
        return b"".join(parts)

    async def _inject(
        self, provider: ProviderRuntime, request: OutgoingRequest
    ) -> AppliedCredential | None:
        if provider.auth is None:
            return None
        context = self._auth_context(provider)
        try:
            # A store-held credential fails closed like every other store step.
            return await self.runtime.health.call(provider.auth.apply(request, context))
        except CredentialError as exc:
            log.error("credential unavailable provider=%s error=%s", provider.name, exc)
            raise CredentialUnavailableError(
                f"could not obtain the credential for provider {provider.name!r}: {exc}"
            ) from None

    async def _after_response(
        self,
        exchange: Exchange,
        provider: ProviderRuntime,
        upstream: UpstreamResponse,
        applied: AppliedCredential | None,
        body: bytes | None,
    ) -> None:
        status = upstream.status
        if status == 429 and exchange.route is not None:
            retry_after = next(
                (value for name, value in upstream.headers if name == "retry-after"),
                None,
            )
            # The upstream's 429 reaches the agent even when the store is down.
            with contextlib.suppress(StoreUnavailableError):
                await self.runtime.limiter.start_cooldown(
                    provider.name, exchange.route.category, retry_after
                )
        auth = provider.auth
        if auth is None:
            return
        if status not in auth.invalidate_on and not auth.wants_response_body(status):
            return
        if await auth.is_rejected(status, body, applied):
            invalidation = auth.invalidate(applied, self._auth_context(provider))
            # The outage is logged once, and the upstream's response still
            # reaches the agent.
            with contextlib.suppress(StoreUnavailableError):
                await self.runtime.health.call(invalidation)

    async def _peek_for_auth(
        self, provider: ProviderRuntime, upstream: UpstreamResponse
    ) -> tuple[UpstreamResponse, bytes | None]:
        """Read a small JSON body ahead when the auth module inspects it."""
        auth = provider.auth
        if auth is None or not auth.wants_response_body(upstream.status):
            return upstream, None
        return await peek_body(upstream)

    def _auth_context(self, provider: ProviderRuntime) -> AuthContext:
        return AuthContext(provider=provider.name, store=self.runtime.store)

    async def _stream(
        self,
        exchange: Exchange,
        provider: ProviderRuntime,
        status: int,
        headers: list[tuple[str, str]],
        upstream: UpstreamResponse,
        finish: Finish | None,
    ) -> None:
        """Stream the response; with ``finish``, capture and store it in time.

        ``finish`` runs before the agent can receive the end of the response
        (the chunk that completes Content-Length, or the end of a chunked
        body), so an agent that retries at once gets the finished record.
        """
        record = exchange.record
        send = exchange.send
        await self._send_start(exchange, provider, status, headers)
        captured: list[bytes] | None = [] if finish else None
        captured_size = 0
        unsent = _content_length(headers)
        while True:
            chunk = await upstream.read_chunk()
            if chunk is None:
                break
            record.bytes_out += len(chunk)
            if captured is not None:
                captured_size += len(chunk)
                if captured_size > MAX_CACHED_BODY:
                    captured = None
                else:
                    captured.append(chunk)
            if unsent is not None:
                unsent -= len(chunk)
                if unsent <= 0 and finish is not None:
                    await finish(_captured(status, headers, captured))
                    finish = None
            try:
                await send(
                    {"type": "http.response.body", "body": chunk, "more_body": True}
                )
            except Exception as exc:
                raise ClientDisconnectedError from exc
        if finish is not None:
            await finish(_captured(status, headers, captured))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _replay(
        self, exchange: Exchange, provider: ProviderRuntime, stored: StoredResponse
    ) -> None:
        """Send a cached or idempotent response without contacting the upstream."""
        await self._send_start(exchange, provider, stored.status, stored.headers)
        body = b"" if exchange.method == "HEAD" else stored.body
        exchange.record.bytes_out += len(body)
        await exchange.send(
            {"type": "http.response.body", "body": body, "more_body": False}
        )

    async def _send_start(
        self,
        exchange: Exchange,
        provider: ProviderRuntime,
        status: int,
        headers: list[tuple[str, str]],
    ) -> None:
        record = exchange.record
        upstream_ms = record.upstream_ms or 0.0
        timing = f"outpost;dur={record.elapsed_ms() - upstream_ms:.2f}"
        if record.upstream_ms is not None:
            timing += f", upstream;dur={upstream_ms:.2f}"
        raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        raw_headers += [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in exchange.extra_headers
        ]
        raw_headers += [
            (b"x-proxy-provider", provider.name.encode()),
            (b"x-proxy-cache", record.cache.encode()),
            (b"x-request-id", record.request_id.encode()),
            (b"server-timing", timing.encode()),
        ]
        record.status = status
        await exchange.send(
            {"type": "http.response.start", "status": status, "headers": raw_headers}
        )


def _captured(
    status: int, headers: list[tuple[str, str]], chunks: list[bytes] | None
) -> StoredResponse | None:
    """Return the captured response, or None when it was too large to keep."""
    if chunks is None:
        return None
    return StoredResponse(status, headers, b"".join(chunks))


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name == "content-length" and value.strip().isdigit():
            return int(value)
    return None


def _idempotency_key(exchange: Exchange) -> str | None:
    if exchange.method not in IDEMPOTENT_METHODS:
        return None
    keys = {value for name, value in exchange.headers if name == "idempotency-key"}
    if not keys:
        return None

    # The upstream receives every line and may honour another key than the
    # one Outpost reserved, so two different keys, or an empty one, fail closed.
    key = keys.pop()
    if keys or not key.strip():
        raise BadRequestError(
            "send one non-empty Idempotency-Key header, or none",
            reason="ambiguous_idempotency_key",
        )
    return key


def _rate_limit_headers(limit: TakeResult) -> list[tuple[str, str]]:
    reset = max(0, int(-(-limit.reset_after // 1)))
    return [
        ("x-outpost-ratelimit-limit", str(limit.limit)),
        ("x-outpost-ratelimit-remaining", str(limit.remaining)),
        ("x-outpost-ratelimit-reset", str(reset)),
    ]


def _escape_non_ascii(query: str) -> str:
    # The query was decoded as latin-1, one character per byte. The upstream
    # client would encode characters above 0x7F as UTF-8, which turns each
    # such byte into two, so send the agent's bytes as escapes instead.
    if query.isascii():
        return query
    return "".join(char if char.isascii() else f"%{ord(char):02X}" for char in query)


def _prefix_provider(path: str) -> str | None:
    if not path.startswith("/p/"):
        return None
    return path[3:].split("/", 1)[0] or None


def _strip_provider_prefix(path: str) -> str:
    if not path.startswith("/p/"):
        return path
    rest = path[3:]
    slash = rest.find("/")
    return "/" if slash < 0 else rest[slash:]


def _transport_error(provider: ProviderRuntime, exc: TransportError) -> ProxyError:
    log.error(
        "upstream request failed provider=%s error=%s phase=%s",
        provider.name,
        exc.kind,
        exc.phase,
    )
    if exc.is_timeout:
        return UpstreamTimeoutError(
            f"provider {provider.name!r} did not respond in time ({exc.kind}); retry, "
            "or raise the provider's timeouts if the API is slow",
            metadata={"kind": exc.kind},
        )
    return UpstreamError(
        f"could not reach provider {provider.name!r} ({exc.kind}); retry later",
        metadata={"kind": exc.kind},
    )


async def send_error(send: Send, error: ProxyError, record: AccessRecord) -> None:
    """Send ``error`` as the JSON envelope and record it."""
    body = error_body(error)
    record.status = error.status
    record.error_code = error.code
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", record.request_id.encode()),
    ]
    headers += [(name.encode(), value.encode()) for name, value in error.headers]
    await send(
        {"type": "http.response.start", "status": error.status, "headers": headers}
    )
    record.bytes_out += len(body)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def reject_bad_target(raw_path: bytes) -> None:
    """Reject targets that are not origin-form before anything else runs."""
    if not raw_path.startswith(b"/"):
        raise BadRequestError(
            "request target must be a path starting with '/'; Outpost is not a "
            "forward proxy, so send the path and choose the provider with "
            "X-Provider or /p/<provider>/",
            reason="not_origin_form",
        )
