"""In-process store for tests and single-process deployments."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

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
from outpost.store.bucket import take_tokens

SWEEP_INTERVAL = 60.0
"""Seconds between sweeps that drop expired entries that are never read again."""


@dataclass(slots=True)
class Entry:
    """A stored value and its expiry on the monotonic clock (None: never)."""

    value: object
    expires_at: float | None


class MemoryStore(Store):
    """Store whose state lives in dicts of one process and one event loop.

    Every method runs to completion without awaiting, so operations are
    atomic against other tasks of the same loop. It must never be shared
    between threads or processes: each process would see its own state, so
    limits would multiply by the number of workers. State is lost on exit.
    The clock is ``time.monotonic``, which wall-clock changes cannot move.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}
        self._closed = False
        self._next_sweep = time.monotonic() + SWEEP_INTERVAL

    async def take(self, key: str, windows: Sequence[Window]) -> TakeResult:
        check_windows(windows)
        now = self._now()
        states = self._read("bucket", check_key(key), now)
        current = states if isinstance(states, dict) else {}

        result, new_states = take_tokens(current, windows, now * 1000)
        if new_states is not None:
            longest = max(w.window_ms for w in windows) / 1000
            self._write("bucket", key, {**current, **new_states}, now + longest)
        return result

    async def set_cooldown(self, key: str, seconds: float) -> None:
        check_ttl(seconds, "cooldown")
        now = self._now()
        until = now + seconds
        current = self._read("cooldown", check_key(key), now)
        if isinstance(current, float) and current >= until:
            return
        self._write("cooldown", key, until, until)

    async def cooldown_remaining(self, key: str) -> float:
        now = self._now()
        until = self._read("cooldown", check_key(key), now)
        return max(0.0, until - now) if isinstance(until, float) else 0.0

    async def cache_get(self, key: str) -> bytes | None:
        return self._read_bytes("cache", key)

    async def cache_put(self, key: str, value: bytes, ttl: float) -> None:
        check_ttl(ttl)
        now = self._now()
        self._write("cache", check_key(key), bytes(value), now + ttl)

    async def idem_reserve(
        self, key: str, fingerprint: str, lease: float = DEFAULT_LEASE
    ) -> IdemResult:
        check_ttl(lease, "lease")
        now = self._now()
        record = self._read_record(check_key(key), now)
        token = secrets.token_urlsafe(16)

        result = decide_reserve(record, fingerprint, token)
        if record is None and result.state is IdemState.RESERVED:
            self._write("idem", key, IdemRecord(fingerprint, token), now + lease)
        return result

    async def idem_complete(
        self, key: str, token: str, response: bytes, ttl: float
    ) -> bool:
        check_ttl(ttl)
        now = self._now()
        record = self._read_record(check_key(key), now)
        if record is None or record.token != token:
            return False
        if record.response is None:
            done = IdemRecord(record.fingerprint, token, bytes(response))
            self._write("idem", key, done, now + ttl)
        return True

    async def idem_release(self, key: str, token: str) -> bool:
        record = self._read_record(check_key(key), self._now())
        if record is None or record.token != token or record.response is not None:
            return False
        del self._entries[("idem", key)]
        return True

    async def get(self, key: str) -> bytes | None:
        return self._read_bytes("value", key)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        now = self._now()
        expires_at = None if ttl is None else now + check_ttl(ttl)
        self._write("value", check_key(key), bytes(value), expires_at)

    async def set_if_absent(
        self, key: str, value: bytes, ttl: float | None = None
    ) -> bool:
        now = self._now()
        expires_at = None if ttl is None else now + check_ttl(ttl)
        if self._read("value", check_key(key), now) is not None:
            return False
        self._write("value", key, bytes(value), expires_at)
        return True

    async def delete(self, key: str) -> None:
        self._now()
        self._entries.pop(("value", check_key(key)), None)

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        return self._pop_if("value", key, bytes(expected))

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        check_ttl(ttl)
        now = self._now()
        holder = self._read("lock", check_key(key), now)
        if holder is not None and holder != owner:
            return False
        self._write("lock", key, owner, now + ttl)
        return True

    async def release_lock(self, key: str, owner: str) -> bool:
        return self._pop_if("lock", key, owner)

    async def ping(self) -> None:
        self._now()

    async def close(self) -> None:
        self._closed = True
        self._entries.clear()

    def _now(self) -> float:
        """Return the clock, sweeping expired entries now and then."""
        if self._closed:
            raise StoreUnavailableError(
                "memory store is closed; open a new store with open_store()"
            )
        now = time.monotonic()
        if now >= self._next_sweep:
            self._sweep(now)
        return now

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + SWEEP_INTERVAL
        expired = [
            name
            for name, entry in self._entries.items()
            if entry.expires_at is not None and entry.expires_at <= now
        ]
        for name in expired:
            del self._entries[name]

    def _read(self, kind: str, key: str, now: float) -> object:
        entry = self._entries.get((kind, key))
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= now:
            del self._entries[(kind, key)]
            return None
        return entry.value

    def _read_bytes(self, kind: str, key: str) -> bytes | None:
        value = self._read(kind, check_key(key), self._now())
        return value if isinstance(value, bytes) else None

    def _read_record(self, key: str, now: float) -> IdemRecord | None:
        record = self._read("idem", key, now)
        return record if isinstance(record, IdemRecord) else None

    def _write(
        self, kind: str, key: str, value: object, expires_at: float | None
    ) -> None:
        self._entries[(kind, key)] = Entry(value, expires_at)

    def _pop_if(self, kind: str, key: str, expected: object) -> bool:
        if self._read(kind, check_key(key), self._now()) != expected:
            return False
        del self._entries[(kind, key)]
        return True
