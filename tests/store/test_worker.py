"""The store's call thread: order, results, errors and shutdown."""

from __future__ import annotations

import asyncio
import threading

import pytest

from outpost.store.worker import CallThread


async def test_calls_run_in_order_off_the_loop_thread() -> None:
    worker = CallThread("test-store")
    seen: list[tuple[int, str]] = []

    def record(index: int) -> int:
        seen.append((index, threading.current_thread().name))
        return index * 2

    try:
        results = await asyncio.gather(*(worker.call(record, i) for i in range(20)))
    finally:
        worker.shutdown()

    assert results == [i * 2 for i in range(20)]
    assert [index for index, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"test-store"}


async def test_exception_reaches_the_caller() -> None:
    worker = CallThread("test-store")

    def fail() -> None:
        raise ValueError("bad key 'k'")

    try:
        with pytest.raises(ValueError, match="bad key 'k'"):
            await worker.call(fail)
        assert await worker.call(len, "abc") == 3
    finally:
        worker.shutdown()


async def test_cancelled_call_still_runs_and_is_dropped() -> None:
    worker = CallThread("test-store")
    started = threading.Event()
    release = threading.Event()
    done: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        done.append(True)

    future = worker.call(slow)
    await asyncio.to_thread(started.wait, 5)
    future.cancel()
    release.set()
    try:
        assert await worker.call(len, "ab") == 2
    finally:
        worker.shutdown()

    assert done == [True]
    assert future.cancelled()


def test_shutdown_finishes_queued_calls() -> None:
    worker = CallThread("test-store")
    results: list[int] = []

    async def queue_calls() -> None:
        for index in range(5):
            worker.call(results.append, index)

    asyncio.run(queue_calls())
    worker.shutdown(wait=True)

    assert results == [0, 1, 2, 3, 4]
