"""A string type for credentials that never prints its value."""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

MASK: Final = "***"


class Secret:
    """A credential value whose ``repr`` and ``str`` are masked.

    The raw value comes out only through :meth:`reveal`, which auth modules call
    at the moment of injection. Equality is constant-time so that a comparison
    never leaks how many leading characters matched.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the raw value, for injection into an outgoing request only."""
        return self._value

    def digest(self) -> bytes:
        """Return the SHA-256 digest of the value, for fixed-length comparison."""
        return hashlib.sha256(self._value.encode()).digest()

    def matches(self, presented: bytes) -> bool:
        """Compare a presented value with this secret in constant time.

        Both sides are hashed first, so the comparison always runs over two
        32-byte digests whatever the lengths of the inputs.
        """
        presented_digest = hashlib.sha256(presented).digest()
        return hmac.compare_digest(presented_digest, self.digest())

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.digest(), other.digest())

    def __hash__(self) -> int:
        return hash(self.digest())

    def __bool__(self) -> bool:
        return bool(self._value)
