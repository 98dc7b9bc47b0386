"""Token-bucket arithmetic shared by the in-process and SQLite backends.

The Redis backend runs the same steps in Lua (see ``lua.py``). Both use
IEEE doubles, so for the same stored state and clock they decide the same.
The functions here are pure. The caller reads the stored buckets, passes
its clock, and writes back the new states only when the take is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from outpost.store.base import TakeResult, Window

EPSILON = 1e-9
"""Slack for float rounding, so that a bucket refilled to 0.9999999999
tokens after waiting exactly ``retry_after`` still counts as one token."""


@dataclass(frozen=True, slots=True)
class BucketState:
    """The stored state of one window: tokens left at ``updated_ms``."""

    tokens: float
    updated_ms: float


def refill(state: BucketState | None, window: Window, now_ms: float) -> float:
    """Return the tokens in ``window`` at ``now_ms``, capped at capacity.

    A missing state is a full bucket. A clock that went backwards refills
    nothing rather than a negative amount.
    """
    if state is None:
        return float(window.capacity)
    elapsed = max(0.0, now_ms - state.updated_ms)
    rate = window.capacity / window.window_ms
    return min(float(window.capacity), state.tokens + elapsed * rate)


def take_tokens(
    states: Mapping[int, BucketState],
    windows: Sequence[Window],
    now_ms: float,
) -> tuple[TakeResult, dict[int, BucketState] | None]:
    """Take one token from every window, or none.

    ``states`` maps a window length to its stored state. Returns the result
    and, when allowed, the new state of every window to store. When the
    take is denied the second item is None and nothing must be written.
    """
    levels = [refill(states.get(w.window_ms), w, now_ms) for w in windows]
    allowed = all(level + EPSILON >= 1 for level in levels)

    after = [level - 1 if allowed else level for level in levels]
    result = summarize(windows, levels, after, allowed)
    if not allowed:
        return result, None

    # A clock that went backwards must not move a stored time back, or the
    # next take would refill the same interval twice.
    stored = (states[w.window_ms] for w in windows if w.window_ms in states)
    updated = max([now_ms, *(state.updated_ms for state in stored)])
    new_states = {
        w.window_ms: BucketState(level, updated)
        for w, level in zip(windows, after, strict=True)
    }
    return result, new_states


def summarize(
    windows: Sequence[Window],
    levels: Sequence[float],
    after: Sequence[float],
    allowed: bool,
) -> TakeResult:
    """Build the result from token levels before and after the take."""
    retry_ms = 0.0
    best: tuple[int, float, int] | None = None
    for window, level, left in zip(windows, levels, after, strict=True):
        rate = window.capacity / window.window_ms
        if not allowed and level + EPSILON < 1:
            retry_ms = max(retry_ms, (1 - level) / rate)

        remaining = max(0, math.floor(left + EPSILON))
        reset_ms = max(0.0, (window.capacity - left) / rate)
        if best is None or (remaining, -reset_ms) < (best[0], -best[1]):
            best = (remaining, reset_ms, window.capacity)

    assert best is not None  # check_windows rejects an empty sequence
    return TakeResult(
        allowed=allowed,
        retry_after=retry_ms / 1000,
        remaining=best[0],
        limit=best[2],
        reset_after=best[1] / 1000,
    )
