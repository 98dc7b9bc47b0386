"""The disconnect watcher, driven by an in-memory receive and send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from outpost.server import disconnect
from outpost.server.disconnect import DisconnectWatcher

Message = dict[str, Any]
GET_SCOPE: dict[str, Any] = {"type": "http", "headers": [(b"host", b"x")]}


class FakeServer:
    """Hands out request messages and counts concurrent receive calls."""

    def __init__(self, messages: list[Message], delay: float = 0) -> None:
        self.messages = list(messages)
        self.delay = delay
        self.gone = asyncio.Event()
        self.calls = 0
        self.active = 0
        self.max_active = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.calls += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.messages:
                await asyncio.sleep(self.delay)
                return self.messages.pop(0)
            await self.gone.wait()
            return {"type": "http.disconnect"}
        finally:
            self.active -= 1

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def _respond(watcher: DisconnectWatcher, delay: float) -> None:
    await watcher.send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(delay)
    await watcher.send({"type": "http.response.body", "body": b"", "more_body": False})


async def test_fast_request_never_receives() -> None:
    server = FakeServer([{"type": "http.request", "body": b"", "more_body": False}])
    watcher = DisconnectWatcher(GET_SCOPE, server.receive, server.send)
    task = asyncio.ensure_future(_respond(watcher, 0))
    watcher.start(task)
    await task
    watcher.stop()
    await asyncio.sleep(disconnect.WATCH_DELAY * 2)

    assert server.calls == 0
    assert not watcher.disconnected


async def test_disconnect_cancels_a_slow_request() -> None:
    server = FakeServer([{"type": "http.request", "body": b"", "more_body": False}])
    watcher = DisconnectWatcher(GET_SCOPE, server.receive, server.send)
    task = asyncio.ensure_future(_respond(watcher, 30))
    watcher.start(task)
    await asyncio.sleep(disconnect.WATCH_DELAY * 3)
    server.gone.set()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert watcher.disconnected
    watcher.stop()


async def test_watch_waits_for_the_handlers_receive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The watch falls due while the handler's own receive is pending.
    monkeypatch.setattr(disconnect, "WATCH_DELAY", 0)
    request = {"type": "http.request", "body": b"", "more_body": False}
    server = FakeServer([request], delay=0.02)
    watcher = DisconnectWatcher(GET_SCOPE, server.receive, server.send)

    async def handler() -> Message:
        message = await watcher.receive()
        await asyncio.sleep(0.01)
        return message

    task = asyncio.ensure_future(handler())
    watcher.start(task)
    message = await task
    server.gone.set()
    await asyncio.sleep(0.01)
    watcher.stop()

    assert message == request
    assert server.max_active == 1
    assert server.calls == 2


async def test_failed_receive_ends_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A receive that raises must not leave the handler's own receive
    # waiting on the queue forever.
    monkeypatch.setattr(disconnect, "WATCH_DELAY", 0)
    server = FakeServer([{"type": "http.request", "body": b"", "more_body": False}])

    async def broken_receive() -> Message:
        if server.messages:
            return await server.receive()
        raise RuntimeError("transport closed")

    watcher = DisconnectWatcher(GET_SCOPE, broken_receive, server.send)

    async def handler() -> list[Message]:
        await asyncio.sleep(0.02)
        return [await watcher.receive(), await watcher.receive()]

    task = asyncio.ensure_future(handler())
    watcher.start(task)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert watcher.disconnected
    watcher.stop()
