"""Behaviour every store backend must share, run against each of them."""

from __future__ import annotations

import asyncio

import pytest

from outpost.store.base import IdemState, Store, StoreUnavailableError, Window

HOUR_MS = 3_600_000


async def test_take_counts_down_then_denies(store: Store) -> None:
    windows = [Window(3, 10_000)]
    results = [await store.take("api:search", windows) for _ in range(4)]

    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert all(r.limit == 3 for r in results)
    assert results[0].retry_after == 0
    # One token every 3.33 s, and a few ms have passed since the last take.
    assert 3.0 < results[3].retry_after <= 3.334


async def test_take_is_all_or_none_across_windows(store: Store) -> None:
    windows = [Window(2, 300), Window(3, 60_000)]
    first = [await store.take("k", windows) for _ in range(3)]
    assert [r.allowed for r in first] == [True, True, False]

    # The denied take must not have spent a token of the long window.
    await asyncio.sleep(first[2].retry_after + 0.01)
    third = await store.take("k", windows)
    assert third.allowed
    assert (third.remaining, third.limit) == (0, 3)

    blocked = await store.take("k", windows)
    assert not blocked.allowed
    assert 19.0 < blocked.retry_after <= 20.0


async def test_take_refills_continuously(store: Store) -> None:
    windows = [Window(2, 200)]
    assert (await store.take("k", windows)).allowed
    assert (await store.take("k", windows)).allowed
    assert not (await store.take("k", windows)).allowed

    await asyncio.sleep(0.11)
    refilled = await store.take("k", windows)
    assert refilled.allowed
    assert not (await store.take("k", windows)).allowed


async def test_waiting_retry_after_is_enough(store: Store) -> None:
    windows = [Window(4, 400)]
    for _ in range(4):
        assert (await store.take("k", windows)).allowed

    denied = await store.take("k", windows)
    assert not denied.allowed
    assert 0.05 < denied.retry_after <= 0.1

    await asyncio.sleep(denied.retry_after + 0.005)
    assert (await store.take("k", windows)).allowed


async def test_take_reports_tightest_window(store: Store) -> None:
    result = await store.take("k", [Window(100, 1000), Window(2, 60_000)])

    assert (result.remaining, result.limit) == (1, 2)
    assert 29.9 < result.reset_after <= 30.0


async def test_take_keys_are_independent(store: Store) -> None:
    windows = [Window(1, HOUR_MS)]
    assert (await store.take("github:search", windows)).allowed
    assert (await store.take("github:issues", windows)).allowed
    assert not (await store.take("github:search", windows)).allowed


async def test_take_rejects_bad_windows(store: Store) -> None:
    with pytest.raises(ValueError, match="at least one window"):
        await store.take("k", [])
    with pytest.raises(ValueError, match="distinct lengths"):
        await store.take("k", [Window(1, 1000), Window(5, 1000)])
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        Window(0, 1000)


async def test_cooldown_keeps_the_later_expiry(store: Store) -> None:
    assert await store.cooldown_remaining("k") == 0

    await store.set_cooldown("k", 0.5)
    await store.set_cooldown("k", 0.1)
    assert 0.3 < await store.cooldown_remaining("k") <= 0.5

    await store.set_cooldown("k", 2.0)
    assert 1.8 < await store.cooldown_remaining("k") <= 2.0


async def test_cooldown_expires(store: Store) -> None:
    await store.set_cooldown("k", 0.1)
    await asyncio.sleep(0.15)

    assert await store.cooldown_remaining("k") == 0
    await store.set_cooldown("k", 0.2)
    assert await store.cooldown_remaining("k") > 0.1


async def test_take_after_cooldown_skips_take_while_cooling(store: Store) -> None:
    windows = [Window(2, 60_000)]
    await store.set_cooldown("cool", 0.5)

    remaining, result = await store.take_after_cooldown("cool", "k", windows)
    assert 0.3 < remaining <= 0.5
    assert result is None
    # Nothing was taken while the cooldown ran.
    assert (await store.take("k", windows)).remaining == 1


async def test_take_after_cooldown_takes_without_cooldown(store: Store) -> None:
    windows = [Window(2, 60_000)]

    remaining, result = await store.take_after_cooldown("cool", "k", windows)
    assert remaining == 0
    assert result is not None
    assert result.allowed
    assert result.remaining == 1


async def test_cache_entries_expire(store: Store) -> None:
    assert await store.cache_get("k") is None

    await store.cache_put("k", b"\x00body\xff", ttl=0.15)
    assert await store.cache_get("k") == b"\x00body\xff"

    await asyncio.sleep(0.2)
    assert await store.cache_get("k") is None


async def test_cache_and_values_do_not_share_keys(store: Store) -> None:
    await store.set("k", b"token")
    assert await store.cache_get("k") is None
    await store.cache_put("k", b"cached", ttl=10)
    assert await store.get("k") == b"token"


async def test_idempotency_state_machine(store: Store) -> None:
    first = await store.idem_reserve("idem:k-1", "fp-a")
    assert first.state is IdemState.RESERVED
    assert first.token is not None

    assert (await store.idem_reserve("idem:k-1", "fp-a")).state is IdemState.IN_FLIGHT
    assert (await store.idem_reserve("idem:k-1", "fp-b")).state is IdemState.MISMATCH

    assert not await store.idem_complete("idem:k-1", "not-the-token", b"x", 10)
    assert await store.idem_complete("idem:k-1", first.token, b"201 created", 10)

    replay = await store.idem_reserve("idem:k-1", "fp-a")
    assert (replay.state, replay.response) == (IdemState.DONE, b"201 created")
    assert (await store.idem_reserve("idem:k-1", "fp-b")).state is IdemState.MISMATCH

    # A finished record is not a reservation, so it cannot be released.
    assert not await store.idem_release("idem:k-1", first.token)
    assert (await store.idem_reserve("idem:k-1", "fp-a")).state is IdemState.DONE


async def test_idempotency_complete_twice_keeps_first(store: Store) -> None:
    reserved = await store.idem_reserve("k", "fp")
    assert reserved.token is not None
    assert await store.idem_complete("k", reserved.token, b"", 10)
    assert await store.idem_complete("k", reserved.token, b"other", 10)

    replay = await store.idem_reserve("k", "fp")
    assert (replay.state, replay.response) == (IdemState.DONE, b"")


async def test_idempotency_release_frees_the_key(store: Store) -> None:
    first = await store.idem_reserve("k", "fp")
    assert first.token is not None
    assert not await store.idem_release("k", "someone-else")
    assert await store.idem_release("k", first.token)

    second = await store.idem_reserve("k", "fp")
    assert second.state is IdemState.RESERVED
    assert second.token not in (None, first.token)
    assert not await store.idem_release("k", first.token)


async def test_idempotency_lease_expires(store: Store) -> None:
    crashed = await store.idem_reserve("k", "fp", lease=0.1)
    assert crashed.token is not None
    await asyncio.sleep(0.15)

    retry = await store.idem_reserve("k", "fp")
    assert retry.state is IdemState.RESERVED
    assert retry.token is not None
    assert not await store.idem_complete("k", crashed.token, b"late", 10)
    assert await store.idem_complete("k", retry.token, b"ok", 10)


async def test_idempotency_result_expires(store: Store) -> None:
    reserved = await store.idem_reserve("k", "fp")
    assert reserved.token is not None
    await store.idem_complete("k", reserved.token, b"ok", ttl=0.1)
    await asyncio.sleep(0.15)

    assert (await store.idem_reserve("k", "fp-new")).state is IdemState.RESERVED


async def test_values_and_compare_and_delete(store: Store) -> None:
    assert await store.get("token") is None
    await store.set("token", b"at-1")
    assert await store.get("token") == b"at-1"

    assert not await store.compare_and_delete("token", b"at-0")
    assert await store.get("token") == b"at-1"
    assert await store.compare_and_delete("token", b"at-1")
    assert await store.get("token") is None
    assert not await store.compare_and_delete("token", b"at-1")


async def test_set_if_absent_keeps_a_live_value(store: Store) -> None:
    assert await store.set_if_absent("seed", b"first")
    assert not await store.set_if_absent("seed", b"second")
    assert await store.get("seed") == b"first"

    await store.set("short", b"old", ttl=0.1)
    await asyncio.sleep(0.15)
    assert await store.set_if_absent("short", b"new", ttl=10)
    assert await store.get("short") == b"new"


async def test_set_if_absent_has_one_winner(store: Store) -> None:
    values = [f"v{n}".encode() for n in range(20)]
    written = await asyncio.gather(
        *(store.set_if_absent("race", value) for value in values)
    )

    assert sum(written) == 1
    assert await store.get("race") == values[written.index(True)]


async def test_values_expire_and_delete(store: Store) -> None:
    await store.set("short", b"v", ttl=0.1)
    await store.set("long", b"v")
    await asyncio.sleep(0.15)
    assert await store.get("short") is None
    assert not await store.compare_and_delete("short", b"v")

    await store.delete("long")
    await store.delete("never-set")
    assert await store.get("long") is None


async def test_lock_checks_owner(store: Store) -> None:
    assert await store.acquire_lock("mint", "worker-a", ttl=10)
    assert not await store.acquire_lock("mint", "worker-b", ttl=10)
    assert await store.acquire_lock("mint", "worker-a", ttl=10)

    assert not await store.release_lock("mint", "worker-b")
    assert await store.release_lock("mint", "worker-a")
    assert not await store.release_lock("mint", "worker-a")
    assert await store.acquire_lock("mint", "worker-b", ttl=10)


async def test_lock_expires(store: Store) -> None:
    assert await store.acquire_lock("mint", "crashed", ttl=0.1)
    await asyncio.sleep(0.15)

    assert await store.acquire_lock("mint", "worker-b", ttl=10)
    assert not await store.release_lock("mint", "crashed")


async def test_keys_with_hash_tag_characters(store: Store) -> None:
    await store.set("a{b}:c", b"1")
    await store.set("a{b}:d", b"2")
    assert await store.get("a{b}:c") == b"1"
    assert await store.get("a{b}:d") == b"2"


async def test_invalid_arguments_raise_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        await store.get("")
    with pytest.raises(ValueError, match="positive number of seconds"):
        await store.cache_put("k", b"v", ttl=0)
    with pytest.raises(ValueError, match="lease must be"):
        await store.idem_reserve("k", "fp", lease=-1)


async def test_closed_store_is_unavailable(store: Store) -> None:
    await store.ping()
    await store.close()

    with pytest.raises(StoreUnavailableError, match="closed"):
        await store.ping()
