"""Reading a token's expiry from a mint endpoint's JSON response."""

from __future__ import annotations

import time
from datetime import datetime

from outpost.auth.base import CredentialError

# Epoch values above this are milliseconds, not seconds (year 2286 in seconds).
_EPOCH_MS_THRESHOLD = 10_000_000_000


def lifetime_from_response(
    data: dict[str, object], endpoint: str, now: float | None = None
) -> float | None:
    """Return the seconds a minted token stays valid, or None when not given.

    Accepts ``expires_in`` (seconds) or ``expires_at`` as an ISO 8601 time
    with a zone, or as Unix time in seconds or milliseconds.
    """
    current = time.time() if now is None else now
    expires_in = data.get("expires_in")
    if expires_in is not None:
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            return max(0.0, float(expires_in))
        raise CredentialError(f"{endpoint} returned an invalid expires_in")

    expires_at = data.get("expires_at")
    if expires_at is None:
        return None
    if isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
        seconds = float(expires_at)
        if seconds > _EPOCH_MS_THRESHOLD:
            seconds /= 1000
        return max(0.0, seconds - current)
    if isinstance(expires_at, str):
        try:
            moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return max(0.0, moment.timestamp() - current)
    raise CredentialError(
        f"{endpoint} returned an expires_at that is neither ISO 8601 with a time "
        "zone nor Unix time"
    )


def token_from_response(data: dict[str, object], field: str, endpoint: str) -> str:
    """Return the token in ``field``, checked so that it can go in a header."""
    token = data.get(field)
    if not isinstance(token, str) or not token:
        raise CredentialError(f"{endpoint} returned no {field!r}")
    if not token.isascii() or not token.isprintable():
        raise CredentialError(f"{endpoint} returned a {field!r} unfit for a header")
    return token
