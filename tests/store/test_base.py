"""Idempotency decisions and argument checks shared by every backend."""

from __future__ import annotations

import math

import pytest

from outpost.store.base import (
    IdemRecord,
    IdemResult,
    IdemState,
    check_ttl,
    decide_reserve,
    ttl_ms,
)

IN_FLIGHT = IdemRecord("fp-a", "token-1")
DONE = IdemRecord("fp-a", "token-1", b"201")


@pytest.mark.parametrize(
    ("record", "fingerprint", "token", "expected"),
    [
        (None, "fp-a", "token-2", IdemResult(IdemState.RESERVED, token="token-2")),
        (IN_FLIGHT, "fp-b", "token-2", IdemResult(IdemState.MISMATCH)),
        (IN_FLIGHT, "fp-b", "token-1", IdemResult(IdemState.MISMATCH)),
        (IN_FLIGHT, "fp-a", "token-2", IdemResult(IdemState.IN_FLIGHT)),
        (IN_FLIGHT, "fp-a", "token-1", IdemResult(IdemState.RESERVED, "token-1")),
        (DONE, "fp-a", "token-2", IdemResult(IdemState.DONE, response=b"201")),
        (DONE, "fp-a", "token-1", IdemResult(IdemState.DONE, response=b"201")),
        (DONE, "fp-b", "token-2", IdemResult(IdemState.MISMATCH)),
    ],
)
def test_decide_reserve_table(
    record: IdemRecord | None, fingerprint: str, token: str, expected: IdemResult
) -> None:
    assert decide_reserve(record, fingerprint, token) == expected


@pytest.mark.parametrize("ttl", [0, -1, math.inf, math.nan])
def test_check_ttl_rejects_non_positive(ttl: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        check_ttl(ttl)


@pytest.mark.parametrize(
    ("seconds", "milliseconds"), [(0.0001, 1), (0.1, 100), (1.0001, 1001)]
)
def test_ttl_ms_rounds_up(seconds: float, milliseconds: int) -> None:
    assert ttl_ms(seconds) == milliseconds
