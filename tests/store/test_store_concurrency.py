"""Atomicity under concurrent callers: tasks, processes and clients."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from outpost.store.base import IdemState, Store, Window
from outpost.store.redis import RedisStore

HOUR_MS = 3_600_000

# Each worker process opens the shared file, reports that it is ready, waits
# for the go line on stdin, then takes concurrently and prints how many of
# its takes were allowed.
WORKER = """
import asyncio, sys
from outpost.store.base import Window
from outpost.store.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    await store.ping()
    print("ready", flush=True)
    sys.stdin.readline()
    windows = [Window(20, 3_600_000)]
    results = await asyncio.gather(*(store.take("k", windows) for _ in range(100)))
    print(sum(r.allowed for r in results), flush=True)
    await store.close()

asyncio.run(main())
"""


async def count_allowed(store: Store, windows: list[Window], calls: int) -> int:
    results = await asyncio.gather(*(store.take("k", windows) for _ in range(calls)))
    return sum(result.allowed for result in results)


async def test_concurrent_takes_never_overshoot(store: Store) -> None:
    assert await count_allowed(store, [Window(20, HOUR_MS)], 200) == 20


async def test_concurrent_burst_respects_every_window(store: Store) -> None:
    windows = [Window(3, 1000), Window(5, 60_000)]
    assert await count_allowed(store, windows, 50) == 3

    # The short window is full again; the long one has 2 of 5 left.
    await asyncio.sleep(1.1)
    assert await count_allowed(store, windows, 50) == 2


async def test_concurrent_reservations_have_one_owner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.idem_reserve("k-2", "fp-a") for _ in range(10))
    )

    states = [result.state for result in results]
    assert states.count(IdemState.RESERVED) == 1
    assert states.count(IdemState.IN_FLIGHT) == 9


async def test_concurrent_lock_has_one_owner(store: Store) -> None:
    owners = [f"worker-{i}" for i in range(50)]
    acquired = await asyncio.gather(
        *(store.acquire_lock("mint", owner, ttl=10) for owner in owners)
    )
    assert sum(acquired) == 1


def test_sqlite_processes_share_one_bucket(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"

    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=60)[0] for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0]
    assert sum(int(output) for output in outputs) == 20


async def test_redis_clients_share_one_bucket(
    redis_url: str, redis_prefix: str
) -> None:
    prefix = redis_prefix
    first = RedisStore(redis_url, prefix=prefix)
    second = RedisStore(redis_url, prefix=prefix)
    windows = [Window(20, HOUR_MS)]
    try:
        counts = await asyncio.gather(
            count_allowed(first, windows, 100), count_allowed(second, windows, 100)
        )
    finally:
        await first.close()
        await second.close()

    assert sum(counts) == 20
