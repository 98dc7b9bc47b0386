"""The shared minted-token cache: one mint at a time, expiry, backoff, invalidation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from outpost.auth.base import CredentialError
from outpost.auth.minting import (
    BACKOFF_FIRST,
    MintedToken,
    TokenCache,
    cache_ttl,
    token_key,
)
from outpost.store.memory import MemoryStore


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    opened = MemoryStore()
    yield opened
    await opened.close()


class CountingMint:
    """A mint function that counts calls, with a settable delay and failure."""

    def __init__(self, lifetime: float | None = 3600, delay: float = 0.05) -> None:
        self.calls = 0
        self.lifetime = lifetime
        self.delay = delay
        self.fail = False

    async def __call__(self) -> MintedToken:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise CredentialError("token endpoint returned status 503")
        return MintedToken(f"token-{self.calls}", self.lifetime)


async def test_concurrent_misses_mint_once(store: MemoryStore) -> None:
    cache = TokenCache("token:test:p:1")
    mint = CountingMint()

    values = await asyncio.gather(*(cache.get(store, mint) for _ in range(50)))

    assert mint.calls == 1
    assert set(values) == {b"token-1"}


async def test_two_caches_on_one_store_share_the_mint(store: MemoryStore) -> None:
    # Two module instances stand in for two workers sharing one store.
    first = TokenCache("token:test:p:1")
    second = TokenCache("token:test:p:1")
    mint = CountingMint(delay=0.2)

    values = await asyncio.gather(
        *(cache.get(store, mint) for cache in [first, second] * 10)
    )

    assert mint.calls == 1
    assert set(values) == {b"token-1"}


async def test_failed_mint_is_remembered(store: MemoryStore) -> None:
    cache = TokenCache("token:test:p:1")
    mint = CountingMint()
    mint.fail = True

    results = await asyncio.gather(
        *(cache.get(store, mint) for _ in range(50)), return_exceptions=True
    )

    assert mint.calls == 1
    assert all(isinstance(result, CredentialError) for result in results)
    assert "next attempt in 2 s" in str(results[0])
    mint.fail = False
    with pytest.raises(CredentialError):
        await cache.get(store, mint)
    assert mint.calls == 1


async def test_backoff_grows_with_consecutive_failures(store: MemoryStore) -> None:
    cache = TokenCache("token:test:p:1")
    mint = CountingMint(delay=0)
    mint.fail = True

    with pytest.raises(CredentialError, match="next attempt in 2 s"):
        await cache.get(store, mint)
    await store.delete(cache.failure_key)
    with pytest.raises(CredentialError, match="next attempt in 4 s"):
        await cache.get(store, mint)

    await store.delete(cache.failure_key)
    mint.fail = False
    assert await cache.get(store, mint) == b"token-3"
    assert await store.get(cache.failure_count_key) is None


async def test_token_dropped_before_expiry(store: MemoryStore) -> None:
    cache = TokenCache("token:test:p:1")
    mint = CountingMint(lifetime=0.5, delay=0)

    assert await cache.get(store, mint) == b"token-1"
    assert await cache.get(store, mint) == b"token-1"
    await asyncio.sleep(0.5)

    assert await cache.get(store, mint) == b"token-2"
    assert mint.calls == 2


async def test_zero_lifetime_token_is_not_cached(store: MemoryStore) -> None:
    cache = TokenCache("token:test:p:1")
    mint = CountingMint(lifetime=0, delay=0)

    assert await cache.get(store, mint) == b"token-1"
    assert await cache.get(store, mint) == b"token-2"


async def test_invalidate_spares_a_newer_token(store: MemoryStore) -> None:
    cache = TokenCache("token:test:p:1")
    mint = CountingMint(delay=0)
    old = await cache.get(store, mint)
    assert await cache.invalidate(store, old)
    new = await cache.get(store, mint)

    assert not await cache.invalidate(store, old)
    assert await store.get(cache.key) == new


async def test_stale_lock_is_taken_over(store: MemoryStore) -> None:
    cache = TokenCache("token:test:p:1")
    await store.acquire_lock(cache.lock_key, "dead-worker", 0.2)
    mint = CountingMint(delay=0)

    assert await cache.get(store, mint) == b"token-1"
    assert mint.calls == 1


def test_cache_ttl_ends_before_expiry() -> None:
    assert cache_ttl(3600, 0) == 3540
    assert cache_ttl(2, 0) == pytest.approx(1.8)
    assert cache_ttl(2, 0.5) == pytest.approx(1.3)
    assert cache_ttl(None, 0) == 270
    assert cache_ttl(1, 5) == 0


def test_token_key_separates_providers_and_scopes() -> None:
    base = token_key("oauth2_client_credentials", "crm", "url", "id", "read")

    assert base.startswith("token:oauth2_client_credentials:crm:")
    assert base != token_key("oauth2_client_credentials", "crm2", "url", "id", "read")
    assert base != token_key("oauth2_client_credentials", "crm", "url", "id", "write")
    assert base != token_key("oauth2_client_credentials", "crm", "url", "id2", "read")
    assert BACKOFF_FIRST == 2.0
