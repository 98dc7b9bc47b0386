"""Fixtures shared by the whole suite: upstream recorders and Outpost servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.outpost import OutpostServer
from tests.support.upstream import RecordingUpstream
from tests.support.valkey import ValkeyProcess, start_valkey

TEST_SECRET = "tok_outpost_TEST_9f3a"


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    """A recording upstream that answers 200 {"ok":true} by default."""
    server = RecordingUpstream()
    yield server
    server.close()


@pytest.fixture
def foreign_host() -> Iterator[RecordingUpstream]:
    """A second recorder that must never receive a byte."""
    server = RecordingUpstream()
    yield server
    server.close()


@pytest.fixture
def valkey(tmp_path: Path) -> Iterator[ValkeyProcess]:
    """A private Valkey server for tests that stop, kill or reconfigure it."""
    process = start_valkey(tmp_path / "valkey")
    yield process
    process.stop()


StartOutpost = Callable[..., OutpostServer]


@pytest.fixture
def start_outpost(tmp_path: Path) -> Iterator[StartOutpost]:
    """Start Outpost processes with given providers; all are stopped afterwards."""
    servers: list[OutpostServer] = []

    def start(providers: list[dict[str, Any]], **kwargs: Any) -> OutpostServer:
        workdir = tmp_path / f"outpost{len(servers)}"
        workdir.mkdir()
        server = OutpostServer(workdir, providers, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
