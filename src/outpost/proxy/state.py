"""Pipeline steps that keep state in the store: limits, cache, idempotency.

Each step runs only after the caller passed every policy step, so a cached
response or an idempotent replay is never a way around policy. When the store
cannot be reached the steps raise 503 ``PROXY_STORE_UNAVAILABLE``: Outpost
fails closed rather than forwarding unlimited traffic, and recovers on the
next request that reaches the store again.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import logging
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import orjson

from outpost.errors import (
    IdempotencyInFlightError,
    IdempotencyMismatchError,
    ProxyError,
    RateLimitedError,
    StoreUnavailableError,
    UpstreamRateLimitedError,
    retry_after_headers,
)
from outpost.store.base import IdemState, Store, TakeResult, Window
from outpost.store.base import StoreUnavailableError as StoreDownError

log = logging.getLogger("outpost.store")
T = TypeVar("T")

IDEMPOTENCY_TTL = 24 * 3600.0
IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
MAX_CACHED_BODY = 1024 * 1024
MAX_IDEMPOTENT_BODY = 10 * 1024 * 1024
COOLDOWN_MIN, COOLDOWN_MAX, COOLDOWN_DEFAULT = 0.1, 600.0, 1.0
DELAY_SECONDS = re.compile(r"\d{1,10}(?:\.\d{1,6})?")


class StoreHealth:
    """Turns store failures into 503s and logs each outage once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.is_down = False

    async def call(self, operation: Awaitable[T]) -> T:
        """Await a store operation, mapping an outage to a proxy error."""
        try:
            result = await operation
        except StoreDownError as exc:
            if not self.is_down:
                self.is_down = True
                log.error("state store unavailable: %s", exc)
            raise StoreUnavailableError(
                "the state store is unreachable, so Outpost rejects requests "
                "rather than forward them without rate limits; retry shortly",
                reason="store_unavailable",
            ) from None
        if self.is_down:
            self.is_down = False
            log.warning("state store reachable again")
        return result


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response kept for replay: status, upstream headers and body.

    ``stored_at`` is the wall-clock time it was stored, so that a cache hit
    can report its ``Age``.
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    vary: tuple[tuple[str, str | None], ...] = ()
    stored_at: float = 0.0

    def encode(self) -> bytes:
        """Serialise as a JSON head line followed by the raw body."""
        head = {
            "status": self.status,
            "headers": self.headers,
            "vary": self.vary,
            "stored_at": self.stored_at,
        }
        return orjson.dumps(head) + b"\n" + self.body

    def headers_with_age(self, now: float) -> list[tuple[str, str]]:
        """Return the headers with ``Age`` (RFC 9111 section 5.1) set for ``now``.

        The age is the upstream's own ``Age`` plus the seconds in the cache.
        A clock that differs between replicas never makes it negative.
        """
        upstream_age = 0
        for name, value in self.headers:
            if name == "age" and value.strip().isdigit():
                upstream_age = int(value)
        resident = max(0, int(now - self.stored_at))
        kept = [(name, value) for name, value in self.headers if name != "age"]
        return [*kept, ("age", str(upstream_age + resident))]

    @classmethod
    def decode(cls, data: bytes) -> StoredResponse:
        """Parse bytes written by :meth:`encode`."""
        head, _, body = data.partition(b"\n")
        fields = orjson.loads(head)
        return cls(
            status=fields["status"],
            headers=[(name, value) for name, value in fields["headers"]],
            body=body,
            vary=tuple((name, value) for name, value in fields["vary"]),
            stored_at=fields.get("stored_at", 0.0),
        )


class RateLimiter:
    """Token buckets and upstream cooldowns per provider and category."""

    def __init__(self, health: StoreHealth, queue_timeout: float) -> None:
        self.health = health
        self.queue_timeout = queue_timeout

    async def admit(
        self, provider: str, category: str, windows: tuple[Window, ...]
    ) -> TakeResult | None:
        """Wait for a token in every window, up to the queue timeout."""
        deadline = time.monotonic() + self.queue_timeout
        if not windows:
            await self._wait_for_cooldown(provider, category, deadline)
            return None
        store = self.health.store
        key = limit_key(provider, category)
        remaining, result = await self.health.call(
            store.take_after_cooldown(key, key, windows)
        )
        if result is None:
            await self._sleep_out_cooldown(provider, remaining, deadline)
        while True:
            if result is None:
                result = await self.health.call(store.take(key, windows))
            if result.allowed:
                return result
            left = deadline - time.monotonic()
            if result.retry_after > left:
                raise RateLimitedError(
                    f"rate limit for provider {provider!r} category {category!r} "
                    f"reached; retry after {result.retry_after:.1f} s",
                    reason="rate_limit",
                    metadata={"retry_after": round(result.retry_after, 3)},
                    headers=retry_after_headers(result.retry_after),
                )
            await asyncio.sleep(result.retry_after)
            result = None

    async def _wait_for_cooldown(
        self, provider: str, category: str, deadline: float
    ) -> None:
        key = limit_key(provider, category)
        remaining = await self.health.call(self.health.store.cooldown_remaining(key))
        await self._sleep_out_cooldown(provider, remaining, deadline)

    async def _sleep_out_cooldown(
        self, provider: str, remaining: float, deadline: float
    ) -> None:
        if remaining <= 0:
            return
        if time.monotonic() + remaining > deadline:
            raise UpstreamRateLimitedError(
                f"provider {provider!r} asked Outpost to slow down; retry after "
                f"{remaining:.1f} s",
                reason="upstream_cooldown",
                metadata={"retry_after": round(remaining, 3)},
                headers=retry_after_headers(remaining),
            )
        await asyncio.sleep(remaining)

    async def start_cooldown(
        self, provider: str, category: str, retry_after: str | None
    ) -> None:
        """Record an upstream 429 so every worker and replica waits it out."""
        seconds = parse_retry_after(retry_after)
        key = limit_key(provider, category)
        await self.health.call(self.health.store.set_cooldown(key, seconds))


def limit_key(provider: str, category: str) -> str:
    """Return the store key of a provider's category: buckets and cooldown.

    Both records share the key (the store keeps each kind apart), so on
    Redis they carry one hash tag and live in the same cluster slot.
    Provider names never contain ``:``, so no two pairs share a key.
    """
    return f"{provider}:{category}"


def parse_retry_after(value: str | None, now: float | None = None) -> float:
    """Parse ``Retry-After`` (seconds or HTTP-date), clamped to 0.1–600 s.

    RFC 9110 section 10.2.3 allows whole seconds or an HTTP-date, and a
    decimal fraction is accepted too. A missing or invalid value (negative,
    ``inf``, text) gives the 1 s default, and a date in the past the minimum.
    """
    if not value:
        return COOLDOWN_DEFAULT
    value = value.strip()
    if DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return COOLDOWN_DEFAULT
        if moment.tzinfo is None:
            return COOLDOWN_DEFAULT
        seconds = moment.timestamp() - (time.time() if now is None else now)
    return min(COOLDOWN_MAX, max(COOLDOWN_MIN, seconds))


class ResponseCache:
    """A shared cache for GET and HEAD responses of routes with ``cache_ttl``."""

    def __init__(self, health: StoreHealth) -> None:
        self.health = health

    @staticmethod
    def key(provider: str, method: str, path: str, query: str) -> str:
        """Return the cache key of one request."""
        digest = hashlib.sha256(f"{method} {path}?{query}".encode()).hexdigest()
        return f"cache:{provider}:{digest}"

    async def lookup(
        self, key: str, headers: list[tuple[str, str]]
    ) -> StoredResponse | None:
        """Return a stored response whose ``Vary`` headers match this request."""
        data = await self.health.call(self.health.store.cache_get(key))
        if data is None:
            return None
        stored = StoredResponse.decode(data)
        for name, value in stored.vary:
            if _joined(headers, name) != value:
                return None
        return stored

    async def store(self, key: str, response: StoredResponse, ttl: float) -> None:
        """Keep ``response`` for ``ttl`` seconds."""
        await self.health.call(self.health.store.cache_put(key, response.encode(), ttl))


def is_lookup_allowed(headers: list[tuple[str, str]]) -> bool:
    """Return True when the agent accepts a stored response for this request.

    ``no-cache`` and ``no-store`` (or ``Pragma: no-cache``) request a fresh
    response. A ``Range`` request wants part of one, which a stored full
    response must not replace.
    """
    directives = _directives(headers, "cache-control") | _directives(headers, "pragma")
    if directives.keys() & {"no-cache", "no-store"}:
        return False
    return _header(headers, "range") is None


def is_store_allowed(headers: list[tuple[str, str]]) -> bool:
    """Return True when the response to this request may be stored.

    An agent's ``no-store`` forbids it (RFC 9111 section 5.2.1.5), and a
    ``Range`` request gets a partial response.
    """
    if "no-store" in _directives(headers, "cache-control"):
        return False
    return _header(headers, "range") is None


def storable(
    status: int,
    headers: list[tuple[str, str]],
    request: list[tuple[str, str]],
    route_ttl: float,
) -> tuple[float, tuple[tuple[str, str | None], ...]] | None:
    """Return the TTL and Vary values to store a response with, or None.

    Only complete 2xx responses (not 206) without ``no-store``, ``private``,
    ``no-cache`` or ``Set-Cookie`` are shared, and never an event stream.
    ``s-maxage``, else ``max-age``, shortens the route's TTL, so the upstream
    can only make a response expire sooner. ``Vary: *`` is never stored.
    """
    ttl = _shared_lifetime(status, headers, route_ttl)
    if ttl <= 0:
        return None
    names: list[str] = []
    for name, value in headers:
        if name == "vary":
            names += [part.strip().lower() for part in value.split(",") if part.strip()]
    if "*" in names:
        return None
    return ttl, tuple((name, _joined(request, name)) for name in names)


def _shared_lifetime(
    status: int, headers: list[tuple[str, str]], route_ttl: float
) -> float:
    if not 200 <= status < 300 or status == 206:
        return 0
    directives = _directives(headers, "cache-control")
    if directives.keys() & {"no-store", "private", "no-cache"}:
        return 0
    if _header(headers, "set-cookie") is not None:
        return 0
    content_type = (_header(headers, "content-type") or "").lower()
    if content_type.startswith("text/event-stream"):
        return 0
    for name in ("s-maxage", "max-age"):
        if name in directives:
            value = directives[name]
            # An invalid age is treated as stale (RFC 9111 section 4.2.1).
            return min(route_ttl, int(value)) if value.isdigit() else 0
    return route_ttl


RETRYABLE_STATUSES = frozenset({408, 429})
"""Client errors that say the request was not processed and may be retried."""


def is_replayable(status: int) -> bool:
    """Return True when a response finishes its idempotency key for replay.

    A 5xx, 408 or 429 releases the key instead, so the agent's retry with
    the same key reaches the upstream. Replaying a 429 would keep an SDK
    that retries after ``Retry-After`` failing for the record's 24 hours.
    """
    return status < 500 and status not in RETRYABLE_STATUSES


class IdempotencyGuard:
    """Reserves ``Idempotency-Key`` values so a retried write runs once."""

    def __init__(self, health: StoreHealth) -> None:
        self.health = health

    @staticmethod
    def key(provider: str, host_id: str, idempotency_key: str) -> str:
        """Return the store key, scoped by provider and caller."""
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
        return f"idem:{provider}:{host_id}:{digest}"

    @staticmethod
    def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
        """Return a digest of everything that makes two requests the same."""
        digest = hashlib.sha256()
        for part in (method, path, query):
            digest.update(part.encode("latin-1"))
            digest.update(b"\0")
        digest.update(body)
        return digest.hexdigest()

    async def reserve(self, key: str, fingerprint: str) -> str | StoredResponse:
        """Return a reservation token, or the stored response to replay."""
        result = await self.health.call(
            self.health.store.idem_reserve(key, fingerprint)
        )
        if result.state is IdemState.RESERVED:
            assert result.token is not None
            return result.token
        if result.state is IdemState.DONE:
            assert result.response is not None
            return StoredResponse.decode(result.response)
        if result.state is IdemState.MISMATCH:
            raise IdempotencyMismatchError(
                "this Idempotency-Key was used with a different request; use a new "
                "key for a new request",
                reason="idempotency_mismatch",
            )
        raise IdempotencyInFlightError(
            "a request with this Idempotency-Key is still in progress; retry after "
            "it finishes to get its result",
            reason="idempotency_in_flight",
            headers=retry_after_headers(1),
        )

    async def complete(self, key: str, token: str, response: StoredResponse) -> None:
        """Store a finished response for replay."""
        store = self.health.store
        await self.health.call(
            store.idem_complete(key, token, response.encode(), IDEMPOTENCY_TTL)
        )

    async def release(self, key: str, token: str) -> None:
        """Free the key after a 5xx or a transport failure, so a retry may run."""
        try:
            await self.health.call(self.health.store.idem_release(key, token))
        except ProxyError:
            log.error("could not release idempotency key after a failure")


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _joined(headers: list[tuple[str, str]], name: str) -> str | None:
    """Return every value of ``name`` joined with ", ", or None if absent."""
    values = [value for key, value in headers if key == name]
    return ", ".join(values) if values else None


def _directives(headers: list[tuple[str, str]], name: str) -> dict[str, str]:
    """Return the directives of every ``name`` header: lower-case name to value.

    Repeated headers count as one list, so ``private`` in a second
    ``Cache-Control`` header is not missed.
    """
    directives: dict[str, str] = {}
    for part in (_joined(headers, name) or "").split(","):
        directive, _, value = part.partition("=")
        directive = directive.strip().lower()
        if directive:
            directives[directive] = value.strip().strip('"')
    return directives
