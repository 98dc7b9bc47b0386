"""One thread that runs a store's blocking calls in order, for asyncio callers.

It replaces ``loop.run_in_executor`` on a one-thread ThreadPoolExecutor,
which costs a ``concurrent.futures.Future`` (with its own lock and
condition) and a chained asyncio future per call. Here each call is one
queue put, and the thread resolves the caller's asyncio future through
``call_soon_threadsafe``. Calls run one at a time, in submission order.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    Callable[..., Any],
    tuple[Any, ...],
]


class CallThread:
    """A daemon thread that runs submitted functions one after another.

    Cancelling the returned future does not stop a call that already runs,
    as with ``run_in_executor``; its result is then dropped.
    """

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``function(*args)``; return a future of the running loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, function, args))
        return future

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop after the calls already queued; join the thread if ``wait``."""
        self._queue.put(None)
        if wait:
            self._thread.join()

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            loop, future, function, args = item
            try:
                result = function(*args)
            except BaseException as exc:  # handed to the awaiting task
                _resolve(loop, _set_exception, future, exc)
            else:
                _resolve(loop, _set_result, future, result)


def _resolve(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    # A loop closed in the meantime cannot take the result, so it is dropped.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
