"""Stops a request's work when the agent closes its connection.

Outpost's server implements ASGI spec 2.3: ``send`` after the client has
gone returns without an error, so a handler that only sends never learns that
nobody is reading. An endless upstream stream (server-sent events, a slow
completion) would then stay open until it ends by itself. The one signal is
``http.disconnect`` from ``receive``, which arrives only while something is
waiting on it.

:class:`DisconnectWatcher` waits on ``receive`` from shortly after the
request body has been read in full (``WATCH_DELAY``), and cancels the
request's task when the agent goes away.
Once the upstream response has started, that closes the upstream connection
at once. From then on the watcher is the only caller of the server's
``receive``. Later ``receive`` calls from the handler get its messages
through a queue, so the server never sees two concurrent ``receive`` calls.
It never cancels after the response has been sent in full, so work that
follows the response (storing a cached or idempotent result) always runs to
the end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("outpost.server")

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The watcher starts this many seconds after the body has been read. A
# request that finishes sooner, as most do, never pays for the watching task
# and its pending receive, which cost more CPU than the rest of a small
# exchange. A disconnect is noticed at most this much later. At 32 busy
# connections a small request can take over 10 ms, hence 100 ms.
WATCH_DELAY = 0.1


class DisconnectWatcher:
    """Wraps one request's ``receive`` and ``send`` to notice a gone agent.

    NOTE: a body that the handler stops reading before its end (an
    upstream that responded early) leaves the watcher unstarted, so such a
    disconnect is noticed only when the upstream response ends.
    """

    def __init__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._remaining = _declared_length(scope)
        self._body_read = self._remaining == 0
        self._finished = False
        self._target: asyncio.Future[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._is_due = False
        self._is_receiving = False
        self._watch: asyncio.Task[None] | None = None
        # Created with the watching task, which feeds it.
        self._queue: asyncio.Queue[Message] | None = None
        self.disconnected = False

    def start(self, target: asyncio.Future[Any]) -> None:
        """Watch on behalf of ``target``, the task that serves the request."""
        self._target = target
        self._start_if_ready()

    def stop(self) -> None:
        """Stop watching; call when the request's task has ended."""
        if self._timer is not None:
            self._timer.cancel()
        if self._watch is not None and not self._watch.done():
            self._watch.cancel()

    async def receive(self) -> Message:
        """Return the next request message, as the server's ``receive`` does."""
        if self._queue is not None:
            return await self._queue.get()
        self._is_receiving = True
        try:
            message = await self._receive()
        finally:
            self._is_receiving = False
        if message["type"] == "http.request":
            self._note_body(message)
        if self._is_due:
            self._begin_watch()
        return message

    async def send(self, message: Message) -> None:
        """Pass ``message`` to the server, noting when the response is complete."""
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self._finished = True
            self.stop()
        await self._send(message)

    def _note_body(self, message: Message) -> None:
        # A client that stops at Content-Length never asks for the final
        # empty message, so a complete length counts as the end too.
        if self._remaining is not None:
            self._remaining -= len(message.get("body", b""))
        if not message.get("more_body") or self._remaining == 0:
            self._body_read = True
            self._start_if_ready()

    def _start_if_ready(self) -> None:
        if self._timer is not None or self._watch is not None:
            return
        if self._body_read and self._target is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(WATCH_DELAY, self._on_due)

    def _on_due(self) -> None:
        self._is_due = True
        # Two concurrent receive calls would confuse the server, so a
        # receive of the handler's own in flight starts the watch when it
        # returns.
        if not self._is_receiving:
            self._begin_watch()

    def _begin_watch(self) -> None:
        if self._watch is None and not self._finished:
            self._queue = asyncio.Queue()
            self._watch = asyncio.ensure_future(self._wait_for_disconnect())

    async def _wait_for_disconnect(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            try:
                message = await self._receive()
            except Exception:
                # A server that cannot deliver messages has lost the agent.
                # The handler's own receive calls wait on the queue, so they
                # must get an end rather than wait forever.
                log.exception("receive failed while watching for a disconnect")
                message = {"type": "http.disconnect"}
            queue.put_nowait(message)
            if message["type"] == "http.disconnect":
                break
        if self._finished or self._target is None:
            return
        self.disconnected = True
        self._target.cancel()


def _declared_length(scope: dict[str, Any]) -> int | None:
    """Return the body length the request declares, or None if unknown.

    No framing header at all means no body, so the length is 0.
    """
    length: int | None = 0
    for name, value in scope["headers"]:
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            length = int(value) if value.strip().isdigit() else None
    return length
