"""Concurrent requests for race tests: many connections opened at once.

Each request gets its own connection, so the server treats them as separate
clients arriving together, the way a burst of agents would.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from tests.support.rawhttp import RawResponse


@dataclass(frozen=True)
class Call:
    """One request of a burst."""

    port: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def burst(calls: Sequence[Call], source: str | None = None) -> list[RawResponse]:
    """Send every call at once, each on a new connection; return the responses.

    ``source`` binds the client sockets to that local address, for example
    ``127.0.0.2``, to act as another caller.
    """
    return asyncio.run(_send_all(calls, source))


def repeat(call: Call, count: int) -> list[Call]:
    """Return ``count`` copies of ``call``."""
    return [call] * count


def statuses(responses: Sequence[RawResponse]) -> Counter[int]:
    """Count the responses by status."""
    return Counter(response.status for response in responses)


async def _send_all(calls: Sequence[Call], source: str | None) -> list[RawResponse]:
    local_addr = (source, 0) if source else None
    connector = aiohttp.TCPConnector(limit=0, force_close=True, local_addr=local_addr)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        return await asyncio.gather(*(_send(session, call) for call in calls))


async def _send(session: aiohttp.ClientSession, call: Call) -> RawResponse:
    url = f"http://127.0.0.1:{call.port}{call.target}"
    async with session.request(
        call.method,
        url,
        headers=list(call.headers),
        data=call.body or None,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    ) as response:
        body = await response.read()
        headers = [(name, value) for name, value in response.headers.items()]
        return RawResponse(response.status, headers, body, b"")
