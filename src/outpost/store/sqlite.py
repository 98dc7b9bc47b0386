"""Embedded, persistent store in one SQLite file, shared by local workers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from outpost.store.base import (
    DEFAULT_LEASE,
    IdemRecord,
    IdemResult,
    IdemState,
    Store,
    StoreUnavailableError,
    TakeResult,
    Window,
    check_key,
    check_ttl,
    check_windows,
    decide_reserve,
)
from outpost.store.bucket import BucketState, take_tokens
from outpost.store.worker import CallThread

T = TypeVar("T")
# The cooldown key (None for a plain take), the bucket key and the windows.
_Take = tuple[str | None, str, list[Window]]
_TakeOutcome = tuple[float, TakeResult | None]

SCHEMA_VERSION = 1
BUSY_TIMEOUT = 5.0
"""Seconds to wait for another process's write lock before giving up."""
WAL_SIZE_LIMIT = 4 * 1024 * 1024
"""Bytes the WAL file is cut back to after a checkpoint."""
PURGE_INTERVAL = 60.0
"""Default seconds between deletes of expired rows, per process."""

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bucket (
        key TEXT NOT NULL, window_ms INTEGER NOT NULL, tokens REAL NOT NULL,
        updated_ms REAL NOT NULL, expires_at REAL NOT NULL,
        PRIMARY KEY (key, window_ms)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS entry (
        kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
        expires_at REAL, PRIMARY KEY (kind, key)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS idem (
        key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, token TEXT NOT NULL,
        response BLOB, expires_at REAL NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS bucket_expiry ON bucket (expires_at)",
    "CREATE INDEX IF NOT EXISTS entry_expiry ON entry (expires_at)",
    "CREATE INDEX IF NOT EXISTS idem_expiry ON idem (expires_at)",
)

SELECT_ENTRY = """SELECT value FROM entry WHERE kind = ? AND key = ?
    AND (expires_at IS NULL OR expires_at > ?)"""
DELETE_ENTRY_IF = """DELETE FROM entry WHERE kind = ? AND key = ? AND value = ?
    AND (expires_at IS NULL OR expires_at > ?)"""
UPSERT_ENTRY = (
    "INSERT OR REPLACE INTO entry (kind, key, value, expires_at) VALUES (?, ?, ?, ?)"
)
INSERT_ENTRY_IF_ABSENT = """INSERT INTO entry (kind, key, value, expires_at)
    VALUES (?, ?, ?, ?) ON CONFLICT (kind, key)
    DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
    WHERE expires_at IS NOT NULL AND expires_at <= ?"""
RAISE_COOLDOWN = """INSERT INTO entry (kind, key, value, expires_at)
    VALUES ('cooldown', ?, x'', ?) ON CONFLICT (kind, key)
    DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)"""
TAKE_LOCK = """INSERT INTO entry (kind, key, value, expires_at)
    VALUES ('lock', ?, ?, ?) ON CONFLICT (kind, key)
    DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
    WHERE value = excluded.value OR expires_at <= ?"""
SELECT_BUCKETS = "SELECT window_ms, tokens, updated_ms FROM bucket WHERE key = ?"
UPSERT_BUCKET = """INSERT OR REPLACE INTO bucket
    (key, window_ms, tokens, updated_ms, expires_at) VALUES (?, ?, ?, ?, ?)"""
SELECT_IDEM = """SELECT fingerprint, token, response FROM idem
    WHERE key = ? AND expires_at > ?"""
PURGE = tuple(
    f"DELETE FROM {table} WHERE expires_at <= ?"  # noqa: S608 (fixed names)
    for table in ("bucket", "entry", "idem")
)
UPSERT_IDEM = """INSERT OR REPLACE INTO idem
    (key, fingerprint, token, response, expires_at) VALUES (?, ?, ?, ?, ?)"""


class SqliteStore(Store):
    """Store in one SQLite file, correct for several processes on one host.

    Every read-modify-write runs in one ``BEGIN IMMEDIATE`` transaction (or
    is one statement), so the file's write lock serializes it against every
    process that opened the same file. WAL mode lets reads run beside a
    writer. ``synchronous=NORMAL`` means a power cut may lose the last
    commits but never corrupts the file.

    The clock is the host's wall clock (``time.time``): every process on the
    machine reads the same one, and unlike a monotonic clock it stays
    meaningful across restarts. It must never be opened on a network file
    system, where SQLite locking is unreliable.

    After construction, every call but the token take runs on one thread
    per store, so the event loop does not wait on disk or on another
    process's lock. The constructor opens the file synchronously, which is
    meant for startup.

    Token takes are on every request's path, so they are committed in
    groups, in arrival order, one transaction per group. The takes queued
    in one event-loop iteration run at its end on the loop itself, on a
    second connection that fails at once instead of waiting for the write
    lock; a group that meets the lock goes to the thread instead. While a
    group runs on the thread, new takes queue behind it and run next as one
    group. A take reads the buckets as every earlier take left them, so the
    limits stay exact.
    Open the store in each worker after it forks, because a SQLite
    connection must never be used on both sides of a fork.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        purge_interval: float = PURGE_INTERVAL,
    ) -> None:
        self._path = path
        self._closed = False
        self._purge_interval = purge_interval
        self._next_purge = 0.0
        self._queued_takes: list[tuple[asyncio.Future[_TakeOutcome], _Take]] = []
        self._inline_takes: list[tuple[asyncio.Future[_TakeOutcome], _Take]] = []
        self._takes_running = False
        self._executor = CallThread("outpost-sqlite")
        try:
            self._conn = self._connect(path, busy_timeout)
            self._loop_conn = self._connect_for_loop(path)
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown(wait=False)
            raise self._unavailable(exc) from exc

    async def take(self, key: str, windows: Sequence[Window]) -> TakeResult:
        check_windows(windows)
        _, result = await self._queue_take((None, check_key(key), list(windows)))
        assert result is not None  # a take without cooldown always runs
        return result

    async def take_after_cooldown(
        self, cooldown_key: str, key: str, windows: Sequence[Window]
    ) -> tuple[float, TakeResult | None]:
        # One trip to the store's thread instead of two: each trip costs
        # about as much CPU as the SQL it runs.
        check_windows(windows)
        take = (check_key(cooldown_key), check_key(key), list(windows))
        return await self._queue_take(take)

    async def set_cooldown(self, key: str, seconds: float) -> None:
        check_ttl(seconds, "cooldown")
        await self._run(self._raise_cooldown, check_key(key), seconds)

    async def cooldown_remaining(self, key: str) -> float:
        return await self._run(self._cooldown_remaining, check_key(key))

    async def cache_get(self, key: str) -> bytes | None:
        return await self._run(self._select, "cache", check_key(key))

    async def cache_put(self, key: str, value: bytes, ttl: float) -> None:
        check_ttl(ttl)
        await self._run(self._upsert, "cache", check_key(key), bytes(value), ttl)

    async def idem_reserve(
        self, key: str, fingerprint: str, lease: float = DEFAULT_LEASE
    ) -> IdemResult:
        check_ttl(lease, "lease")
        token = secrets.token_urlsafe(16)
        return await self._run(
            self._idem_reserve, check_key(key), fingerprint, token, lease
        )

    async def idem_complete(
        self, key: str, token: str, response: bytes, ttl: float
    ) -> bool:
        check_ttl(ttl)
        return await self._run(
            self._idem_complete, check_key(key), token, bytes(response), ttl
        )

    async def idem_release(self, key: str, token: str) -> bool:
        return await self._run(self._idem_release, check_key(key), token)

    async def get(self, key: str) -> bytes | None:
        return await self._run(self._select, "value", check_key(key))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        if ttl is not None:
            check_ttl(ttl)
        await self._run(self._upsert, "value", check_key(key), bytes(value), ttl)

    async def set_if_absent(
        self, key: str, value: bytes, ttl: float | None = None
    ) -> bool:
        if ttl is not None:
            check_ttl(ttl)
        args = (check_key(key), bytes(value), ttl)
        return await self._run(self._insert_if_absent, *args)

    async def delete(self, key: str) -> None:
        sql = "DELETE FROM entry WHERE kind = 'value' AND key = ?"
        await self._run(self._execute, sql, (check_key(key),))

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        args = ("value", check_key(key), bytes(expected))
        return await self._run(self._delete_if, *args)

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        check_ttl(ttl)
        return await self._run(self._take_lock, check_key(key), owner, ttl)

    async def release_lock(self, key: str, owner: str) -> bool:
        args = ("lock", check_key(key), owner.encode())
        return await self._run(self._delete_if, *args)

    async def ping(self) -> None:
        await self._run(self._execute, "SELECT 1", ())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._queued_takes or self._inline_takes:
            # Takes queued behind a running group, or waiting for their turn
            # on the loop, still run before the close.
            group = self._queued_takes + self._inline_takes
            self._queued_takes = []
            self._inline_takes = []
            self._send_takes(group)
        await self._executor.call(self._conn.close)
        self._executor.shutdown(wait=True)
        self._loop_conn.close()

    def _queue_take(self, take: _Take) -> asyncio.Future[_TakeOutcome]:
        self._check_open()
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._takes_running:
            self._queued_takes.append((future, take))
            return future
        if not self._inline_takes:
            loop.call_soon(self._run_inline_takes)
        self._inline_takes.append((future, take))
        return future

    def _run_inline_takes(self) -> None:
        """Run the takes queued in this event-loop iteration on the loop itself.

        A group of takes costs about as much CPU as the hand-over to the
        store's thread and back, and the hand-over adds latency. So takes
        run inline when they can, on a second connection that never waits
        for the write lock. When another process or the store's thread holds
        the lock, the group goes to the thread, which waits for it.
        """
        group = self._inline_takes
        self._inline_takes = []
        if not group:
            return
        if self._closed or self._takes_running:
            self._queued_takes.extend(group)
            if not self._takes_running:
                self._start_takes()
            return
        try:
            outcomes = self._take_group([take for _, take in group], self._loop_conn)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                self._fail_takes(group, exc)
                return
            self._queued_takes.extend(group)
            self._start_takes()
            return
        except sqlite3.Error as exc:
            self._fail_takes(group, exc)
            return
        for (future, _), outcome in zip(group, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)

    def _fail_takes(
        self,
        group: list[tuple[asyncio.Future[_TakeOutcome], _Take]],
        exc: sqlite3.Error,
    ) -> None:
        for future, _ in group:
            if not future.done():
                future.set_exception(self._unavailable(exc))

    def _start_takes(self) -> None:
        """Send every queued take to the thread as one group."""
        group = self._queued_takes
        self._queued_takes = []
        if self._closed:
            for future, _ in group:
                if not future.done():
                    future.set_exception(self._closed_error())
            return
        self._send_takes(group)

    def _send_takes(
        self, group: list[tuple[asyncio.Future[_TakeOutcome], _Take]]
    ) -> None:
        self._takes_running = True
        running = self._executor.call(self._take_group, [take for _, take in group])
        running.add_done_callback(functools.partial(self._finish_takes, group))

    def _finish_takes(
        self,
        group: list[tuple[asyncio.Future[_TakeOutcome], _Take]],
        running: asyncio.Future[list[_TakeOutcome]],
    ) -> None:
        self._takes_running = False
        if self._queued_takes:
            self._start_takes()
        if running.cancelled():
            exc: BaseException | None = self._closed_error()
        else:
            exc = running.exception()
        for index, (future, _) in enumerate(group):
            if future.done():
                continue
            if isinstance(exc, sqlite3.Error):
                # A fresh error per caller, because each raises it in its own task.
                future.set_exception(self._unavailable(exc))
            elif exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(running.result()[index])

    # Everything below runs on the store's thread.

    @staticmethod
    def _connect(path: str, busy_timeout: float) -> sqlite3.Connection:
        # The file contains operator tokens, so only its owner may read it.
        # SQLite gives the -wal and -shm files the same permissions.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        conn = sqlite3.connect(
            path,
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout,
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Checkpoints leave the WAL file at its largest size; this bounds
            # it once a checkpoint has caught up.
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
            with immediate(conn):
                create_schema(conn, path)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _connect_for_loop(path: str) -> sqlite3.Connection:
        # A zero busy timeout: the event loop must never wait for the lock.
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=0
        )
        conn.execute("PRAGMA synchronous = NORMAL")
        # This connection makes most commits, so it runs SQLite's automatic
        # checkpoints. A checkpoint from another connection competes with
        # its writes and falls behind under load, and the WAL then grows.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        return conn

    def _take_group(
        self, takes: list[_Take], conn: sqlite3.Connection | None = None
    ) -> list[_TakeOutcome]:
        """Run ``takes`` in order in one transaction, with one clock reading.

        Each cooldown and each bucket key is read once, and each changed
        bucket written once. Every statement releases the GIL, and while
        the event loop runs, getting it back can take the interpreter's
        switch interval (5 ms by default), so the statement count must not
        grow with the number of takes.
        """
        conn = conn or self._conn
        outcomes: list[_TakeOutcome] = []
        cooldowns: dict[str, float] = {}
        buckets: dict[str, dict[int, BucketState]] = {}
        changed: dict[tuple[str, int], tuple[BucketState, float]] = {}
        with immediate(conn):
            now_ms = time.time() * 1000
            for cooldown_key, key, windows in takes:
                if cooldown_key is not None:
                    if cooldown_key not in cooldowns:
                        remaining = _cooldown_remaining(conn, cooldown_key)
                        cooldowns[cooldown_key] = remaining
                    if cooldowns[cooldown_key] > 0:
                        outcomes.append((cooldowns[cooldown_key], None))
                        continue
                if key not in buckets:
                    buckets[key] = _read_buckets(conn, key)
                states = buckets[key]

                result, new_states = take_tokens(states, windows, now_ms)
                if new_states is not None:
                    states.update(new_states)
                    expires_at = (now_ms + max(w.window_ms for w in windows)) / 1000
                    for length, state in new_states.items():
                        changed[key, length] = (state, expires_at)
                outcomes.append((0.0, result))

            params = [
                (key, length, state.tokens, state.updated_ms, expires_at)
                for (key, length), (state, expires_at) in changed.items()
            ]
            if params:
                conn.executemany(UPSERT_BUCKET, params)
            if conn is self._conn:
                self._purge_if_due(now_ms / 1000)
        return outcomes

    def _raise_cooldown(self, key: str, seconds: float) -> None:
        self._conn.execute(RAISE_COOLDOWN, (key, time.time() + seconds))

    def _cooldown_remaining(self, key: str) -> float:
        return _cooldown_remaining(self._conn, key)

    def _select(self, kind: str, key: str) -> bytes | None:
        row = self._conn.execute(SELECT_ENTRY, (kind, key, time.time())).fetchone()
        return None if row is None else bytes(row[0])

    def _upsert(self, kind: str, key: str, value: bytes, ttl: float | None) -> None:
        now = time.time()
        expires_at = None if ttl is None else now + ttl
        self._conn.execute(UPSERT_ENTRY, (kind, key, value, expires_at))
        self._purge_if_due(now)

    def _insert_if_absent(self, key: str, value: bytes, ttl: float | None) -> bool:
        now = time.time()
        expires_at = None if ttl is None else now + ttl
        params = ("value", key, value, expires_at, now)
        return self._conn.execute(INSERT_ENTRY_IF_ABSENT, params).rowcount == 1

    def _execute(self, sql: str, params: tuple[object, ...]) -> None:
        self._conn.execute(sql, params)

    def _delete_if(self, kind: str, key: str, expected: bytes) -> bool:
        params = (kind, key, expected, time.time())
        return self._conn.execute(DELETE_ENTRY_IF, params).rowcount == 1

    def _take_lock(self, key: str, owner: str, ttl: float) -> bool:
        now = time.time()
        params = (key, owner.encode(), now + ttl, now)
        return self._conn.execute(TAKE_LOCK, params).rowcount == 1

    def _read_record(self, key: str, now: float) -> IdemRecord | None:
        row = self._conn.execute(SELECT_IDEM, (key, now)).fetchone()
        if row is None:
            return None
        response = None if row[2] is None else bytes(row[2])
        return IdemRecord(row[0], row[1], response)

    def _idem_reserve(
        self, key: str, fingerprint: str, token: str, lease: float
    ) -> IdemResult:
        with immediate(self._conn):
            now = time.time()
            record = self._read_record(key, now)
            result = decide_reserve(record, fingerprint, token)
            if record is None and result.state is IdemState.RESERVED:
                params = (key, fingerprint, token, None, now + lease)
                self._conn.execute(UPSERT_IDEM, params)
            self._purge_if_due(now)
        return result

    def _idem_complete(self, key: str, token: str, response: bytes, ttl: float) -> bool:
        with immediate(self._conn):
            now = time.time()
            record = self._read_record(key, now)
            if record is None or record.token != token:
                return False
            if record.response is None:
                params = (key, record.fingerprint, token, response, now + ttl)
                self._conn.execute(UPSERT_IDEM, params)
        return True

    def _idem_release(self, key: str, token: str) -> bool:
        sql = """DELETE FROM idem WHERE key = ? AND token = ?
            AND response IS NULL AND expires_at > ?"""
        return self._conn.execute(sql, (key, token, time.time())).rowcount == 1

    def _purge_if_due(self, now: float) -> None:
        """Delete expired rows at most once per interval in this process."""
        if now < self._next_purge:
            return
        self._next_purge = now + self._purge_interval
        for statement in PURGE:
            self._conn.execute(statement, (now,))

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"sqlite store at {self._path!r} is closed; "
            "open a new store with open_store()"
        )

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        """Run ``function`` on the store's thread, mapping SQLite failures."""
        self._check_open()
        try:
            return await self._executor.call(function, *args)
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"sqlite store at {self._path!r} failed ({type(exc).__name__}: "
            f"{exc}); check that the directory exists, the file is writable, "
            "and no other program holds a long lock on it"
        )


def _read_buckets(conn: sqlite3.Connection, key: str) -> dict[int, BucketState]:
    rows = conn.execute(SELECT_BUCKETS, (key,)).fetchall()
    return {row[0]: BucketState(row[1], row[2]) for row in rows}


def _cooldown_remaining(conn: sqlite3.Connection, key: str) -> float:
    sql = "SELECT expires_at FROM entry WHERE kind = 'cooldown' AND key = ?"
    row = conn.execute(sql, (key,)).fetchone()
    return 0.0 if row is None else max(0.0, row[0] - time.time())


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block in one transaction that holds the write lock from the
    start, so no other process can change what the block reads."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def create_schema(conn: sqlite3.Connection, path: str) -> None:
    """Create the tables, or reject a file written by a newer version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreUnavailableError(
            f"sqlite store at {path!r} has schema version {version}, but this "
            f"version of Outpost reads version {SCHEMA_VERSION}; upgrade Outpost "
            "or point it at another file"
        )
    for statement in SCHEMA:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
