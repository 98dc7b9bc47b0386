"""Distributed store on Redis or Valkey, shared by several proxy replicas.

Key scheme: a logical key ``K`` of kind ``kind`` is stored under
``<prefix>:{K}:<kind>``, and the prefix defaults to ``outpost``. The kinds
are ``rl`` (rate-limit buckets), ``cd`` (cooldowns), ``cache``, ``idem``
(idempotency records), ``val`` (tokens and other values) and ``lock``
(mint locks). The braces are a Redis Cluster hash tag, so every
record of one logical key (for example ``github:search``) lives in the same
slot. Every operation reads and writes one key, in one command or one Lua
script, so no operation ever crosses slots.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AuthenticationError,
    RedisError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.typing import EncodableT

from outpost.store import lua
from outpost.store.base import (
    DEFAULT_LEASE,
    IdemResult,
    IdemState,
    Store,
    StoreUnavailableError,
    TakeResult,
    Window,
    check_key,
    check_ttl,
    check_windows,
    ttl_ms,
)


class RedisStore(Store):
    """Store on a Redis-compatible server, correct across many replicas.

    Rate limits use the server's clock (``TIME`` inside the script), so
    replicas with skewed clocks still share one bucket correctly. Scripts
    run by EVALSHA and are loaded again after a server restart or
    ``SCRIPT FLUSH``. A command fails with StoreUnavailableError after the
    socket timeout instead of hanging, and the client reconnects by itself
    once the server responds again. At most ``max_connections`` commands
    run at once, and the rest wait up to ``socket_timeout`` for a free
    connection. Error messages name the server by scheme, host, port and
    database only, so the password never appears in them.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "outpost",
        socket_timeout: float = 1.0,
        max_connections: int = 64,
    ) -> None:
        self._where = describe_url(url)
        self._prefix = prefix
        self._closed = False

        try:
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                # Seconds a command waits for a free pooled connection.
                timeout=socket_timeout,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                # One immediate retry replaces a pooled connection that the
                # server closed while it restarted. Timeouts are not retried:
                # the script may have run, and the caller must not wait twice.
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        except ValueError as exc:
            raise ValueError(
                f"invalid Redis URL {self._where!r}; expected "
                "redis://[:password@]host[:port][/db], rediss://... or "
                "unix:///path/to/socket"
            ) from exc
        self._client = Redis.from_pool(pool)

        self._take = self._register(lua.TAKE)
        self._raise_cooldown = self._register(lua.RAISE_COOLDOWN)
        self._reserve = self._register(lua.IDEM_RESERVE)
        self._complete = self._register(lua.IDEM_COMPLETE)
        self._release = self._register(lua.IDEM_RELEASE)
        self._acquire = self._register(lua.ACQUIRE_LOCK)
        self._delete_if = self._register(lua.DELETE_IF)

    async def take(self, key: str, windows: Sequence[Window]) -> TakeResult:
        check_windows(windows)
        args: list[EncodableT] = [n for w in windows for n in (w.capacity, w.window_ms)]
        with self._errors():
            reply = await self._take([self._key(key, "rl")], args)
        allowed, retry_ms, remaining, limit, reset_ms = reply
        return TakeResult(
            allowed=bool(allowed),
            retry_after=float(retry_ms) / 1000,
            remaining=int(remaining),
            limit=int(limit),
            reset_after=float(reset_ms) / 1000,
        )

    async def set_cooldown(self, key: str, seconds: float) -> None:
        milliseconds = ttl_ms(check_ttl(seconds, "cooldown"))
        with self._errors():
            await self._raise_cooldown([self._key(key, "cd")], [milliseconds])

    async def cooldown_remaining(self, key: str) -> float:
        with self._errors():
            remaining_ms = await self._client.pttl(self._key(key, "cd"))
        return max(0, int(remaining_ms)) / 1000

    async def cache_get(self, key: str) -> bytes | None:
        return await self._get(self._key(key, "cache"))

    async def cache_put(self, key: str, value: bytes, ttl: float) -> None:
        milliseconds = ttl_ms(check_ttl(ttl))
        with self._errors():
            await self._client.set(self._key(key, "cache"), value, px=milliseconds)

    async def idem_reserve(
        self, key: str, fingerprint: str, lease: float = DEFAULT_LEASE
    ) -> IdemResult:
        token = secrets.token_urlsafe(16)
        args: list[EncodableT] = [fingerprint, token, ttl_ms(check_ttl(lease, "lease"))]
        with self._errors():
            reply = await self._reserve([self._key(key, "idem")], args)
        state = IdemState(reply[0].decode())
        if state is IdemState.RESERVED:
            return IdemResult(state, token=token)
        if state is IdemState.DONE:
            return IdemResult(state, response=bytes(reply[1]))
        return IdemResult(state)

    async def idem_complete(
        self, key: str, token: str, response: bytes, ttl: float
    ) -> bool:
        args: list[EncodableT] = [token, response, ttl_ms(check_ttl(ttl))]
        with self._errors():
            return bool(await self._complete([self._key(key, "idem")], args))

    async def idem_release(self, key: str, token: str) -> bool:
        with self._errors():
            return bool(await self._release([self._key(key, "idem")], [token]))

    async def get(self, key: str) -> bytes | None:
        return await self._get(self._key(key, "val"))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        milliseconds = None if ttl is None else ttl_ms(check_ttl(ttl))
        with self._errors():
            await self._client.set(self._key(key, "val"), value, px=milliseconds)

    async def set_if_absent(
        self, key: str, value: bytes, ttl: float | None = None
    ) -> bool:
        milliseconds = None if ttl is None else ttl_ms(check_ttl(ttl))
        name = self._key(key, "val")
        with self._errors():
            written = await self._client.set(name, value, px=milliseconds, nx=True)
        return bool(written)

    async def delete(self, key: str) -> None:
        with self._errors():
            await self._client.delete(self._key(key, "val"))

    async def compare_and_delete(self, key: str, expected: bytes) -> bool:
        with self._errors():
            return bool(await self._delete_if([self._key(key, "val")], [expected]))

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        args: list[EncodableT] = [owner, ttl_ms(check_ttl(ttl))]
        with self._errors():
            return bool(await self._acquire([self._key(key, "lock")], args))

    async def release_lock(self, key: str, owner: str) -> bool:
        with self._errors():
            return bool(await self._delete_if([self._key(key, "lock")], [owner]))

    async def ping(self) -> None:
        with self._errors():
            await self._client.ping()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.aclose()

    def _key(self, key: str, kind: str) -> str:
        return f"{self._prefix}:{{{check_key(key)}}}:{kind}"

    def _register(self, source: str) -> AsyncScript:
        script: AsyncScript = self._client.register_script(source)
        return script

    async def _get(self, name: str) -> bytes | None:
        with self._errors():
            value: Any = await self._client.get(name)
        return None if value is None else bytes(value)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn every client and server failure into StoreUnavailableError."""
        if self._closed:
            raise StoreUnavailableError(
                f"redis store at {self._where} is closed; "
                "open a new store with open_store()"
            )
        try:
            yield
        except AuthenticationError as exc:
            raise self._unavailable(
                "rejected the credentials; check the password in the store URL"
            ) from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            reason = type(exc).__name__
            raise self._unavailable(
                f"did not respond ({reason}); check that the server is running "
                "and reachable"
            ) from exc
        except ResponseError as exc:
            raise self._unavailable(f"returned an error: {exc}") from exc
        except RedisError as exc:
            raise self._unavailable(f"failed ({type(exc).__name__})") from exc

    def _unavailable(self, reason: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"redis store at {self._where} {reason}")


def describe_url(url: str) -> str:
    """Return ``url`` without user, password or query, safe for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{host}{port}{parts.path}"
