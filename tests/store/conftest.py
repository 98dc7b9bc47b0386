"""Fixtures that run every store backend against real components.

Redis tests use a real Valkey server that the session starts on a free
loopback port, or the server named by ``OUTPOST_TEST_REDIS_URL``. A server
that cannot start fails the tests; nothing here skips.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from outpost.store.base import Store
from outpost.store.memory import MemoryStore
from outpost.store.redis import RedisStore
from outpost.store.sqlite import SqliteStore
from tests.support.valkey import start_valkey, unique_prefix

BACKENDS = ["memory", "sqlite", "redis"]


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
