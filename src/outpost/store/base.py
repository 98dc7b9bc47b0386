"""The store interface shared by every backend, and its result types.

A store holds the proxy's mutable state: rate-limit buckets, cooldowns,
cached responses, idempotency records, operator-set tokens and mint locks.
Every backend must behave the same way, and every operation that reads and
then writes (a take across windows, an idempotency reservation, a lock, a
compare-and-delete) must be atomic against every other worker that shares
the store.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

DEFAULT_LEASE = 300.0
"""Seconds an idempotency reservation lives if its owner never finishes it."""


class StoreUnavailableError(Exception):
    """The store could not be reached or did not respond in time.

    The message names the backend and where it lives, and it must never
    contain a password or other secret from the store URL. The proxy maps
    this error to 503 and fails closed.
    """


@dataclass(frozen=True, slots=True)
class Window:
    """One token bucket: ``capacity`` tokens that refill over ``window_ms``.

    Refill is continuous, so a bucket regains ``capacity / window_ms``
    tokens per millisecond up to ``capacity``.
    """

    capacity: int
    window_ms: int

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(
                f"window capacity must be at least 1, got {self.capacity!r}; "
                "use a positive number of requests"
            )
        if self.window_ms < 1:
            raise ValueError(
                f"window length must be at least 1 ms, got {self.window_ms!r}"
            )


@dataclass(frozen=True, slots=True)
class TakeResult:
    """The outcome of one ``take`` across all windows of a bucket key.

    ``retry_after`` is the number of seconds until every window has a
    token again (0 when allowed). ``remaining``, ``limit`` and
    ``reset_after`` describe the tightest window: the one with the fewest
    whole tokens left, and on a tie the one that takes longest to refill.
    ``reset_after`` is the number of seconds until that window is full.
    """

    allowed: bool
    retry_after: float
    remaining: int
    limit: int
    reset_after: float


class IdemState(enum.Enum):
    """The next step for the caller of ``idem_reserve``."""

    RESERVED = "reserved"
    """The caller owns the key and must forward, then complete or release."""
    IN_FLIGHT = "in_flight"
    """Another request with the same fingerprint owns the key right now."""
    MISMATCH = "mismatch"
    """The key is in use by a request with a different fingerprint."""
    DONE = "done"
    """A finished response is stored and must be replayed."""


@dataclass(frozen=True, slots=True)
class IdemResult:
    """The outcome of ``idem_reserve``.

    ``token`` is set only for RESERVED and proves ownership of the
    reservation to ``idem_complete`` and ``idem_release``. ``response`` is
    set only for DONE.
    """

    state: IdemState
    token: str | None = None
    response: bytes | None = None


@dataclass(frozen=True, slots=True)
class IdemRecord:
    """A stored idempotency record; ``response`` is None while in flight."""

    fingerprint: str
    token: str
    response: bytes | None = None


def decide_reserve(
    record: IdemRecord | None, fingerprint: str, token: str
) -> IdemResult:
    """Decide a reservation from the live record, if any.

    The fingerprint is compared before anything else, so a request with a
    different body always gets MISMATCH, even while the key is in flight.
    A caller that presents the token of the live reservation gets RESERVED
    again, so a retried reserve after a lost reply does not lock itself out.
    """
    if record is None:
        return IdemResult(IdemState.RESERVED, token=token)
    if record.fingerprint != fingerprint:
        return IdemResult(IdemState.MISMATCH)
    if record.response is not None:
        return IdemResult(IdemState.DONE, response=record.response)
    if record.token == token:
        return IdemResult(IdemState.RESERVED, token=token)
    return IdemResult(IdemState.IN_FLIGHT)


def check_key(key: str) -> str:
    """Return ``key`` if it can name a record, else raise ValueError."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"store key must be a non-empty string, got {key!r}")
    return key


def check_ttl(ttl: float, name: str = "ttl") -> float:
    """Return ``ttl`` if it is a positive, finite number of seconds."""
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {ttl!r}")
    return ttl


def check_windows(windows: Sequence[Window]) -> Sequence[Window]:
    """Return ``windows`` if it is non-empty with distinct window lengths.

    Buckets are stored per window length, so two windows of the same length
    would share one bucket. Only the smaller capacity of the two matters.
    """
    if not windows:
        raise ValueError("take needs at least one window")
    lengths = [window.window_ms for window in windows]
    if len(set(lengths)) != len(lengths):
        raise ValueError(
            f"windows must have distinct lengths, got {lengths!r}; "
            "keep only the smallest capacity for each length"
        )
    return windows


def ttl_ms(ttl: float) -> int:
    """Convert seconds to whole milliseconds, rounding up to at least 1."""
    return max(1, math.ceil(ttl * 1000))


class Store(abc.ABC):
    """Shared mutable state for every worker and replica of the proxy.

    Contract for every backend:

    - ``take``, ``idem_reserve``, ``idem_complete``, ``idem_release``,
      ``acquire_lock``, ``release_lock``, ``set_cooldown``, ``set_if_absent``
      and ``compare_and_delete`` are atomic: no other caller can observe or
      change the record between their read and their write.
    - Expired records behave exactly like missing ones.
    - Connection failures and timeouts raise StoreUnavailableError and never
      a backend-specific exception, so callers can fail closed.
    - Invalid arguments (empty key, non-positive ttl) raise ValueError.
    """

    @abc.abstractmethod
    async def take(self, key: str, windows: Sequence[Window]) -> TakeResult:
        """Take one token from every window of ``key``, or none at all."""

    @abc.abstractmethod
    async def set_cooldown(self, key: str, seconds: float) -> None:
        """Block ``key`` for ``seconds``, unless a later expiry is set."""

    @abc.abstractmethod
    async def cooldown_remaining(self, key: str) -> float:
        """Return the seconds left on the cooldown of ``key``, or 0."""

    async def take_after_cooldown(
        self, cooldown_key: str, key: str, windows: Sequence[Window]
    ) -> tuple[float, TakeResult | None]:
        """Read the cooldown of ``cooldown_key``; take from ``key`` if none runs.

        Returns the seconds left on the cooldown and None without taking, or
        0.0 and the take's result. This default makes the two calls in turn;
        a backend that pays per round trip overrides it with one.
        """
        remaining = await self.cooldown_remaining(cooldown_key)
        if remaining > 0:
            return remaining, None
        return 0.0, await self.take(key, windows)

    @abc.abstractmethod
    async def cache_get(self, key: str) -> bytes | None:
        """Return the cached response for ``key``, or None."""

    @abc.abstractmethod
    async def cache_put(self, key: str, value: bytes, ttl: float) -> None:
        """Cache ``value`` under ``key`` for ``ttl`` seconds."""

    @abc.abstractmethod
    async def idem_reserve(
        self, key: str, fingerprint: str, lease: float = DEFAULT_LEASE
    ) -> IdemResult:
        """Reserve ``key`` for one request, or report why it cannot be.

        A reservation expires after ``lease`` seconds so that a crashed
        worker does not hold the key forever.
        """

    @abc.abstractmethod
    async def idem_complete(
        self, key: str, token: str, response: bytes, ttl: float
    ) -> bool:
        """Store ``response`` for replay if ``token`` still owns ``key``.

        Returns False when the reservation was lost (its lease expired and
        another request took the key); nothing is written then.
        """

    @abc.abstractmethod
    async def idem_release(self, key: str, token: str) -> bool:
        """Drop the reservation of ``key`` if ``token`` owns it and it is
        still in flight, so that the request may be retried."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None:
        """Return the value stored under ``key``, or None."""

    @abc.abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, for ``ttl`` seconds or forever."""

    @abc.abstractmethod
    async def set_if_absent(
        self, key: str, value: bytes, ttl: float | None = None
    ) -> bool:
        """Store ``value`` under ``key`` only if no live value is there.

        Returns True when this call wrote the value. An expired value counts
        as absent, so it is replaced.
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""

    @abc.abstractmethod
    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        """Remove ``key`` only if it still contains ``expected``."""

    @abc.abstractmethod
    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        """Take the lock ``key`` for ``owner`` for ``ttl`` seconds.

        Returns True if the lock was free or already held by ``owner`` (its
        ttl is then extended), and False if another owner holds it.
        """

    @abc.abstractmethod
    async def release_lock(self, key: str, owner: str) -> bool:
        """Release the lock ``key`` only if ``owner`` holds it."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailableError unless the store responds."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and threads; the store is unusable after."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
