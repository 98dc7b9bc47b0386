"""Shared state for the proxy, behind one interface with three backends.

``open_store`` picks the backend from a URL. Backend modules are imported
only when chosen, so that importing this package never imports redis.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from outpost.store.base import (
    DEFAULT_LEASE,
    IdemResult,
    IdemState,
    Store,
    StoreUnavailableError,
    TakeResult,
    Window,
)

__all__ = [
    "DEFAULT_LEASE",
    "IdemResult",
    "IdemState",
    "Store",
    "StoreUnavailableError",
    "TakeResult",
    "Window",
    "open_store",
]

REDIS_SCHEMES = ("redis", "rediss", "unix")


def open_store(url: str | None, *, path_default: str) -> Store:
    """Open the store named by ``url``.

    - None: SQLite at ``path_default``.
    - ``sqlite:///PATH``: SQLite at PATH; like SQLAlchemy, a fourth slash
      makes it absolute (``sqlite:////var/lib/outpost/state.db``).
    - ``memory://``: in-process state, for tests and one process only.
    - ``redis://``, ``rediss://`` (TLS), ``unix://``: Redis or Valkey.
    """
    if url is None:
        return open_sqlite(path_default)

    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == "sqlite":
        return open_sqlite(sqlite_path(url))
    if scheme == "memory":
        from outpost.store.memory import MemoryStore

        return MemoryStore()
    if scheme in REDIS_SCHEMES:
        from outpost.store.redis import RedisStore

        return RedisStore(url)
    raise ValueError(
        f"unsupported store URL scheme {scheme!r}; use sqlite:///PATH, "
        "memory://, redis://HOST:PORT/DB, rediss://HOST:PORT/DB or "
        "unix:///PATH/TO/SOCKET"
    )


def sqlite_path(url: str) -> str:
    """Return the file path of a ``sqlite:///PATH`` URL."""
    prefix = "sqlite:///"
    path = url[len(prefix) :] if url.lower().startswith(prefix) else ""
    if not path:
        raise ValueError(
            f"SQLite store URL {url!r} has no file path; use "
            "sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return path


def open_sqlite(path: str) -> Store:
    from outpost.store.sqlite import SqliteStore

    return SqliteStore(path)
