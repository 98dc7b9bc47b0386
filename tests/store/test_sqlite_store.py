"""SQLite backend: persistence, file settings, purging and bad files."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from outpost.store.base import IdemState, StoreUnavailableError, Window
from outpost.store.sqlite import SCHEMA_VERSION, WAL_SIZE_LIMIT, SqliteStore

COUNT_ROWS = {
    "bucket": "SELECT count(*) FROM bucket",
    "entry": "SELECT count(*) FROM entry",
    "idem": "SELECT count(*) FROM idem",
}


def count_rows(path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        count: int = conn.execute(COUNT_ROWS[table]).fetchone()[0]
    return count


async def test_state_survives_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    windows = [Window(2, 3_600_000)]
    async with SqliteStore(path) as first:
        await first.set("token", b"at-1")
        await first.take("k", windows)
        reserved = await first.idem_reserve("idem", "fp")
        assert reserved.token is not None
        await first.idem_complete("idem", reserved.token, b"201", ttl=60)

    async with SqliteStore(path) as second:
        assert await second.get("token") == b"at-1"
        assert (await second.take("k", windows)).remaining == 0
        replay = await second.idem_reserve("idem", "fp")
        assert (replay.state, replay.response) == (IdemState.DONE, b"201")


async def test_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SqliteStore(str(path)) as store:
        await store.set("token", b"secret")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_expired_rows_are_purged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SqliteStore(str(path), purge_interval=0.05) as store:
        await store.cache_put("old", b"x", ttl=0.05)
        await store.set("kept", b"x")
        await store.take("bucket", [Window(1, 50)])
        await store.idem_reserve("idem", "fp", lease=0.05)
        await asyncio.sleep(0.1)

        await store.cache_put("new", b"x", ttl=60)

    assert count_rows(path, "entry") == 2
    assert count_rows(path, "bucket") == 0
    assert count_rows(path, "idem") == 0


async def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "state.db"
    with pytest.raises(StoreUnavailableError, match="directory exists") as caught:
        SqliteStore(str(path))

    assert str(path) in str(caught.value)


async def test_newer_schema_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(StoreUnavailableError, match="upgrade Outpost"):
        SqliteStore(str(path))


async def test_locked_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    async with SqliteStore(str(path), busy_timeout=0.2) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailableError, match="locked"):
                await asyncio.wait_for(store.take("k", [Window(1, 1000)]), 10)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

        assert (await store.take("k", [Window(1, 1000)])).allowed


async def test_grouped_takes_keep_keys_apart(tmp_path: Path) -> None:
    windows = [Window(2, 3_600_000)]
    async with SqliteStore(str(tmp_path / "state.db")) as store:
        await store.set_cooldown("cooling", 60)
        # Queued in one loop iteration, so all but the first share a group.
        results = await asyncio.gather(
            store.take("b", windows),
            store.take_after_cooldown("cooling", "a", windows),
            store.take("b", windows),
            store.take("b", windows),
            store.take_after_cooldown("idle", "a", windows),
        )

    first_b, cooled, second_b, third_b, a_taken = results
    assert cooled[0] > 59
    assert cooled[1] is None
    assert [first_b.allowed, second_b.allowed, third_b.allowed] == [True, True, False]
    assert first_b.remaining == 1
    assert second_b.remaining == 0
    assert a_taken[0] == 0.0
    assert a_taken[1] is not None
    assert a_taken[1].allowed
    assert a_taken[1].remaining == 1


async def test_close_runs_queued_takes_first(tmp_path: Path) -> None:
    windows = [Window(2, 3_600_000)]
    store = SqliteStore(str(tmp_path / "state.db"))
    first = asyncio.ensure_future(store.take("k", windows))
    second = asyncio.ensure_future(store.take("k", windows))
    await asyncio.sleep(0)
    await store.close()

    assert (await first).remaining == 1
    assert (await second).remaining == 0
    with pytest.raises(StoreUnavailableError, match="is closed"):
        await store.take("k", windows)


async def test_take_waits_out_a_short_lock(tmp_path: Path) -> None:
    # The event loop's connection never waits for the write lock, so a take
    # that meets another process's lock goes to the store's thread, which
    # waits for it, and the take still counts exactly once.
    path = tmp_path / "state.db"
    windows = [Window(2, 3_600_000)]
    async with SqliteStore(str(path), busy_timeout=5) as store:
        await store.take("k", windows)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, blocker.execute, "COMMIT")
        started = loop.time()

        result = await asyncio.wait_for(store.take("k", windows), 10)
        waited = loop.time() - started
        blocker.close()
        after = await store.take("k", windows)

    assert waited >= 0.25
    assert result.allowed
    assert result.remaining == 0
    assert not after.allowed


async def test_takes_run_on_the_loop_when_unlocked(tmp_path: Path) -> None:
    # With the store's thread busy for half a second, takes that finish at
    # once can only have run on the event loop.
    windows = [Window(100, 3_600_000)]
    async with SqliteStore(str(tmp_path / "state.db")) as store:
        await store.take("k", windows)
        busy = store._executor.call(time.sleep, 0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()

        results = await asyncio.gather(*(store.take("k", windows) for _ in range(10)))
        elapsed = loop.time() - started
        await busy

    assert elapsed < 0.4
    assert [result.remaining for result in results] == list(range(98, 88, -1))


async def test_wal_stays_bounded_under_takes(tmp_path: Path) -> None:
    # Each take below commits on its own, as under steady load; without
    # checkpoints that catch up, the WAL would grow by every commit.
    path = tmp_path / "state.db"
    windows = [Window(1_000_000, 3_600_000), Window(1_000_000, 60_000)]
    async with SqliteStore(str(path)) as store:
        for index in range(4000):
            await store.take(f"k{index % 50}", windows)
        wal_size = (tmp_path / "state.db-wal").stat().st_size

    # Without checkpoints that catch up these takes leave about 32 MB. With
    # them the WAL stops near SQLite's checkpoint threshold of 1,000 pages.
    assert wal_size <= WAL_SIZE_LIMIT + 1024 * 1024
