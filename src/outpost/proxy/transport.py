"""The interface between the pipeline and the upstream HTTP client.

The pipeline talks only to :class:`Transport` and :class:`UpstreamResponse`,
so the client can be swapped after measuring. The one in use is
:class:`outpost.proxy.http1.Http1Transport`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from typing import Any

Body = bytes | AsyncIterator[bytes] | None


class TransportError(Exception):
    """The upstream exchange failed. ``kind`` names how, never with a URL."""

    def __init__(self, kind: str, phase: str) -> None:
        super().__init__(f"upstream {kind} during {phase}")
        self.kind = kind
        self.phase = phase

    @property
    def is_timeout(self) -> bool:
        """Return True for connect, read, write and pool timeouts."""
        return self.kind.endswith("timeout")


class UpstreamResponse(abc.ABC):
    """Status, headers and a chunk reader for one upstream response."""

    status: int
    headers: list[tuple[str, str]]

    @abc.abstractmethod
    async def read_chunk(self) -> bytes | None:
        """Return the next body chunk as it arrives, or None at the end."""


class Transport(abc.ABC):
    """Opens one upstream exchange; one instance per provider."""

    @abc.abstractmethod
    def open(
        self, method: str, url: str, headers: list[tuple[str, str]], body: Body
    ) -> Any:
        """Return an async context manager that yields an UpstreamResponse."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close pooled connections."""
