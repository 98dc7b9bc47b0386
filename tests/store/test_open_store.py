"""Choosing a backend from a store URL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from outpost.store import open_store
from outpost.store.memory import MemoryStore
from outpost.store.redis import RedisStore
from outpost.store.sqlite import SqliteStore


async def test_no_url_opens_sqlite_at_default_path(tmp_path: Path) -> None:
    default = tmp_path / "default.db"
    async with open_store(None, path_default=str(default)) as store:
        assert isinstance(store, SqliteStore)
        await store.ping()
    assert default.exists()


async def test_sqlite_url_with_four_slashes_is_absolute(tmp_path: Path) -> None:
    target = tmp_path / "named.db"
    url = f"sqlite:///{target}"
    assert url.startswith("sqlite:////")
    async with open_store(url, path_default="unused.db") as store:
        await store.ping()
    assert target.exists()


async def test_sqlite_url_with_three_slashes_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_store("sqlite:///relative.db", path_default="unused.db"):
        pass
    assert (tmp_path / "relative.db").exists()


async def test_memory_url_opens_memory_store() -> None:
    async with open_store("memory://", path_default="unused.db") as store:
        assert isinstance(store, MemoryStore)


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:1/0", "rediss://:pw@127.0.0.1:1", "unix:///run/valkey.sock"],
)
async def test_redis_urls_open_redis_store(url: str) -> None:
    async with open_store(url, path_default="unused.db") as store:
        assert isinstance(store, RedisStore)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://user:pw@db/outpost", "unsupported store URL scheme 'postgres'"),
        ("state.db", "unsupported store URL scheme ''"),
        ("sqlite://", "has no file path"),
        ("sqlite:///", "has no file path"),
    ],
)
def test_bad_urls_name_the_fix(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        open_store(url, path_default="unused.db")

    assert "pw" not in str(caught.value)


def test_importing_the_package_does_not_import_redis() -> None:
    code = "import sys, outpost.store; print('redis' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "False"
