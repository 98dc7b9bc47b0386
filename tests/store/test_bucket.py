"""Token-bucket arithmetic, checked on a simulated clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outpost.store.base import Window
from outpost.store.bucket import BucketState, take_tokens

windows_strategy = st.lists(
    st.builds(
        Window,
        capacity=st.integers(1, 50),
        window_ms=st.integers(1, 10_000),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda window: window.window_ms,
)
gaps_strategy = st.lists(st.floats(0, 2_000), min_size=1, max_size=60)


@given(windows_strategy, gaps_strategy)
def test_allowed_takes_never_exceed_any_window(
    windows: list[Window], gaps: list[float]
) -> None:
    states: dict[int, BucketState] = {}
    now = 1_000_000.0
    allowed_at: list[float] = []
    for gap in gaps:
        now += gap
        _, new_states = take_tokens(states, windows, now)
        if new_states is not None:
            states = new_states
            allowed_at.append(now)

    # A window admits at most its capacity plus what refilled since the start.
    for window in windows:
        rate = window.capacity / window.window_ms
        for index, started in enumerate(allowed_at):
            admitted = len(allowed_at) - index
            budget = window.capacity + (allowed_at[-1] - started) * rate
            assert admitted <= budget + 1e-6


@given(windows_strategy, st.integers(0, 60))
def test_waiting_retry_after_always_allows(windows: list[Window], takes: int) -> None:
    states: dict[int, BucketState] = {}
    now = 5_000.0
    for _ in range(takes):
        _, new_states = take_tokens(states, windows, now)
        states = new_states or states

    result, _ = take_tokens(states, windows, now)
    if result.allowed:
        assert result.retry_after == 0
        return
    assert result.retry_after > 0
    later, _ = take_tokens(states, windows, now + result.retry_after * 1000)
    assert later.allowed


def test_clock_going_back_refills_nothing() -> None:
    window = Window(2, 1000)
    states = {1000: BucketState(0.0, 10_000.0)}

    result, new_states = take_tokens(states, [window], 9_000.0)

    assert not result.allowed
    assert new_states is None
