"""Redis backend: key scheme, script reloading, outages and secrets."""

from __future__ import annotations

import time
import traceback
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from outpost.store.base import IdemState, StoreUnavailableError, Window
from outpost.store.redis import RedisStore, describe_url
from tests.support.valkey import ValkeyProcess

PASSWORD = "s3cret-store-pw"


def full_text(exc: BaseException) -> str:
    """Return the message and traceback of ``exc`` and its causes."""
    return "".join(traceback.format_exception(exc))


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_url, prefix=redis_prefix)
    yield store
    await store.close()


async def test_keys_follow_the_documented_scheme(
    redis_store: RedisStore, raw: redis.asyncio.Redis, redis_prefix: str
) -> None:
    await redis_store.take("github:search", [Window(5, 1000)])
    await redis_store.set_cooldown("github:search", 10)
    await redis_store.cache_put("c1", b"x", ttl=10)
    await redis_store.idem_reserve("i1", "fp")
    await redis_store.set("t1", b"x")
    await redis_store.acquire_lock("l1", "me", ttl=10)

    found = await raw.keys(f"{redis_prefix}:*")
    keys = {key.decode() if isinstance(key, bytes) else key for key in found}
    assert keys == {
        f"{redis_prefix}:{{github:search}}:rl",
        f"{redis_prefix}:{{github:search}}:cd",
        f"{redis_prefix}:{{c1}}:cache",
        f"{redis_prefix}:{{i1}}:idem",
        f"{redis_prefix}:{{t1}}:val",
        f"{redis_prefix}:{{l1}}:lock",
    }


async def test_bucket_key_expires_once_full(
    redis_store: RedisStore, raw: redis.asyncio.Redis, redis_prefix: str
) -> None:
    await redis_store.take("k", [Window(5, 1000), Window(5, 4000)])

    ttl = await raw.pttl(f"{redis_prefix}:{{k}}:rl")
    assert 3000 < ttl <= 4000


async def test_script_flush_reloads_scripts(
    redis_store: RedisStore, raw: redis.asyncio.Redis
) -> None:
    assert (await redis_store.take("k", [Window(2, 60_000)])).allowed
    await raw.script_flush()

    assert (await redis_store.take("k", [Window(2, 60_000)])).allowed
    assert not (await redis_store.take("k", [Window(2, 60_000)])).allowed
    await raw.script_flush()
    reserved = await redis_store.idem_reserve("i", "fp")
    assert reserved.state is IdemState.RESERVED


async def test_stopped_server_fails_fast_and_recovers(valkey: ValkeyProcess) -> None:
    store = RedisStore(valkey.url)
    try:
        await store.set("token", b"at-1")
        valkey.stop()

        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="did not respond"):
            await store.take("k", [Window(5, 1000)])
        assert time.monotonic() - started < 2.5

        valkey.start()
        await store.ping()
        assert (await store.take("k", [Window(5, 1000)])).allowed
    finally:
        await store.close()


async def test_paused_server_times_out_and_recovers(valkey: ValkeyProcess) -> None:
    store = RedisStore(valkey.url, socket_timeout=0.5)
    pid = valkey.pid()
    try:
        await store.ping()
        valkey.pause(pid)

        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="did not respond"):
            await store.get("token")
        assert time.monotonic() - started < 1.5
    finally:
        valkey.resume(pid)

    try:
        await store.set("token", b"at-1")
        assert await store.get("token") == b"at-1"
    finally:
        await store.close()


async def test_unreachable_server_never_reveals_password(
    valkey: ValkeyProcess,
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{valkey.port}/0"
    valkey.stop()
    store = RedisStore(url)
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            await store.ping()
    finally:
        await store.close()

    assert f"redis://127.0.0.1:{valkey.port}/0" in str(caught.value)
    assert PASSWORD not in full_text(caught.value)


async def test_wrong_password_is_unavailable(valkey: ValkeyProcess) -> None:
    with valkey.client() as admin:
        admin.config_set("requirepass", PASSWORD)

    wrong = RedisStore(f"redis://:not-{PASSWORD}@127.0.0.1:{valkey.port}/0")
    right = RedisStore(f"redis://:{PASSWORD}@127.0.0.1:{valkey.port}/0")
    try:
        with pytest.raises(StoreUnavailableError, match="password") as caught:
            await wrong.ping()
        await right.ping()
    finally:
        await wrong.close()
        await right.close()

    assert PASSWORD not in full_text(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:pw@10.0.0.5:6380/2", "redis://10.0.0.5:6380/2"),
        ("rediss://user:pw@cache.internal/0", "rediss://cache.internal/0"),
        ("redis://[::1]:6379?password=pw", "redis://[::1]:6379"),
        ("unix://:pw@/run/valkey.sock?db=1", "unix:///run/valkey.sock"),
        ("redis://host:notaport", "<unparsable URL>"),
    ],
)
def test_describe_url_drops_credentials(url: str, expected: str) -> None:
    assert describe_url(url) == expected


def test_invalid_url_message_has_no_password() -> None:
    with pytest.raises(ValueError, match="invalid Redis URL") as caught:
        RedisStore(f"redis://:{PASSWORD}@host:notaport/0")

    assert PASSWORD not in str(caught.value)
