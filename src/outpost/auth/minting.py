"""Minted tokens: cached in the store, minted once at a time, backed off on failure.

Schemes whose credential comes from a token endpoint (OAuth 2.0, GitHub App
installations, plugins) share one algorithm, :class:`TokenCache`:

1. Read the token from the store. A hit is the common case and costs one
   store read.
2. On a miss, take the store's mint lock for this token. The lock has an
   owner, so only the worker that took it can release it, and a TTL, so a
   worker that dies while minting cannot block the others for longer than
   :data:`LOCK_TTL`.
3. The lock holder reads the store again (another worker may have minted in
   between), mints, and stores the token with a TTL that ends before the
   token expires, measured from when the mint request started.
4. Everyone else polls the store until the token appears, the lock frees up,
   or a failure record appears.
5. A failed mint writes a failure record that lives for a short, growing
   backoff (2 s, 4 s, ... up to 60 s). Until it expires every request fails
   at once with the same safe message, so a token endpoint that is down
   sees one call per backoff period, not one per request.

Invalidation is compare-and-delete of the exact token a request carried, so
a rejection of an old token never deletes a token minted after it.

This module must never log or raise a token value, a client secret or the
body of a token request or response.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import orjson

from outpost.auth.base import (
    AppliedCredential,
    AuthConfig,
    AuthContext,
    AuthModule,
    CredentialError,
)
from outpost.auth.client import TokenClient
from outpost.http import OutgoingRequest
from outpost.store.base import Store

log = logging.getLogger("outpost.auth")

LOCK_TTL = 20.0
"""Seconds a mint lock lives: longer than one token request may take."""
POLL_INTERVAL = 0.05
"""Seconds between store reads while another worker mints."""
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 60.0
FAILURE_COUNT_TTL = 600.0
"""Seconds the count of consecutive failures is kept for growing the backoff."""
DEFAULT_LIFETIME = 300.0
"""Seconds a token is trusted when the endpoint does not say when it expires."""
MAX_REFRESH_MARGIN = 60.0
"""A token is dropped from the cache at most this many seconds before expiry."""


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A freshly minted credential and its lifetime in seconds (None: unknown)."""

    value: str
    lifetime: float | None = None


Mint = Callable[[], Awaitable[MintedToken]]


def cache_ttl(lifetime: float | None, elapsed: float) -> float:
    """Return how long a token may be cached, 0 when it must not be cached.

    The token is dropped before it expires by 10% of its lifetime, at most
    :data:`MAX_REFRESH_MARGIN` seconds, and the time the mint request took
    counts against it, so a cached token is never served past its expiry.
    """
    total = DEFAULT_LIFETIME if lifetime is None else lifetime
    margin = min(MAX_REFRESH_MARGIN, total * 0.1)
    return max(0.0, total - margin - elapsed)


def token_key(kind: str, provider: str, *identity: str) -> str:
    """Return the store key of one minted token.

    The key carries the scheme and provider in clear text, for operators.
    It ends with a digest of everything that makes two tokens different
    (client id, scope, audience, token URL). Two providers, or one provider
    after a change of scope, therefore never share a token.
    """
    digest = hashlib.sha256(orjson.dumps([kind, provider, *identity])).hexdigest()
    return f"token:{kind}:{provider}:{digest[:32]}"


class TokenCache:
    """One store-cached token with a cross-worker mint lock and failure backoff."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.lock_key = f"{key}:lock"
        self.failure_key = f"{key}:failed"
        self.failure_count_key = f"{key}:failures"
        self._local_lock: asyncio.Lock | None = None

    async def get(self, store: Store, mint: Mint) -> bytes:
        """Return the cached token, minting it first when there is none."""
        value = await store.get(self.key)
        if value:
            return value

        # Coroutines of one worker queue here, so the worker polls the store
        # for them once instead of once per request.
        if self._local_lock is None:
            self._local_lock = asyncio.Lock()
        async with self._local_lock:
            return await self._get_or_mint(store, mint)

    async def invalidate(self, store: Store, value: bytes) -> bool:
        """Delete the token only if the store still contains ``value``."""
        return await store.compare_and_delete(self.key, value)

    async def _get_or_mint(self, store: Store, mint: Mint) -> bytes:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + 2 * LOCK_TTL
        while True:
            value = await store.get(self.key)
            if value:
                return value
            await self._raise_recent_failure(store)

            if await store.acquire_lock(self.lock_key, owner, LOCK_TTL):
                try:
                    return await self._mint_locked(store, mint)
                finally:
                    await store.release_lock(self.lock_key, owner)

            if time.monotonic() > deadline:
                raise CredentialError(
                    "timed out waiting for another worker to mint the token; retry"
                )
            await asyncio.sleep(POLL_INTERVAL)

    async def _raise_recent_failure(self, store: Store) -> None:
        failure = await store.get(self.failure_key)
        if failure is not None:
            raise CredentialError(failure.decode("utf-8", "replace"))

    async def _mint_locked(self, store: Store, mint: Mint) -> bytes:
        # Another worker may have finished a mint between our read and the lock.
        value = await store.get(self.key)
        if value:
            return value

        started = time.monotonic()
        try:
            token = await mint()
        except CredentialError as exc:
            message = await self._record_failure(store, str(exc))
            raise CredentialError(message) from None
        await store.delete(self.failure_count_key)

        value = token.value.encode()
        ttl = cache_ttl(token.lifetime, time.monotonic() - started)
        if ttl > 0:
            await store.set(self.key, value, ttl)
        log.info("token minted key=%s cached_s=%.0f", self.key, ttl)
        return value

    async def _record_failure(self, store: Store, message: str) -> str:
        count_raw = await store.get(self.failure_count_key)
        count = int(count_raw) + 1 if count_raw and count_raw.isdigit() else 1
        backoff = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (count - 1))
        await store.set(self.failure_count_key, str(count).encode(), FAILURE_COUNT_TTL)
        text = f"{message} (next attempt in {backoff:g} s)"
        await store.set(self.failure_key, text.encode(), backoff)
        log.error(
            "token mint failed key=%s consecutive_failures=%s backoff_s=%s error=%s",
            self.key,
            count,
            backoff,
            message,
        )
        return text


def require_store(context: AuthContext) -> Store:
    """Return the context's store, or raise CredentialError when there is none."""
    if context.store is None:
        raise CredentialError(
            "no store is configured for minted tokens; this is a bug in the "
            "caller of the auth module"
        )
    return context.store


class MintingAuth(AuthModule):
    """Base for schemes that mint a bearer-like token and cache it in the store.

    A subclass implements :meth:`cache_identity` (what makes its token
    different from another provider's) and :meth:`mint`. The token goes into
    ``header`` after ``prefix``, by default ``Authorization: Bearer``.
    """

    header: str = "authorization"
    prefix: str = "Bearer "

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        self.client = TokenClient()
        self.injected_headers = frozenset({self.header})
        self._caches: dict[str, TokenCache] = {}

    @abc.abstractmethod
    def cache_identity(self) -> list[str]:
        """Return the values that distinguish this token, such as client id and
        scope. They are hashed into the store key, never stored in clear."""

    @abc.abstractmethod
    async def mint(self, context: AuthContext) -> MintedToken:
        """Obtain a new token; raise CredentialError with a safe message."""

    def cache_for(self, provider: str) -> TokenCache:
        """Return the token cache of this module for ``provider``."""
        cache = self._caches.get(provider)
        if cache is None:
            key = token_key(self.type_name, provider, *self.cache_identity())
            cache = self._caches[provider] = TokenCache(key)
        return cache

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        store = require_store(context)
        cache = self.cache_for(context.provider)
        value = await cache.get(store, lambda: self.mint(context))
        request.set_header(self.header, self.prefix + value.decode())
        return AppliedCredential(cache.key, value)

    async def invalidate(
        self, applied: AppliedCredential | None, context: AuthContext
    ) -> None:
        if applied is None or applied.store_key is None or applied.value is None:
            return
        if context.store is None:
            return
        cache = self.cache_for(context.provider)
        if applied.store_key != cache.key:
            return
        if await cache.invalidate(context.store, applied.value):
            log.info(
                "token rejected by upstream, dropped provider=%s", context.provider
            )

    async def close(self) -> None:
        await self.client.close()
