"""The masked secret type."""

from __future__ import annotations

import hmac

import pytest

from outpost.secret import MASK, Secret


def test_repr_and_str_are_masked() -> None:
    secret = Secret("tok_outpost_TEST_9f3a")

    assert "tok_outpost" not in repr(secret)
    assert str(secret) == MASK
    assert f"{secret}" == MASK
    assert "tok_outpost" not in repr([secret, {"key": secret}])


def test_reveal_returns_raw_value() -> None:
    assert Secret("abc").reveal() == "abc"


def test_matches_compares_equal_length_digests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[int, int]] = []
    original = hmac.compare_digest

    def spy(left: bytes, right: bytes) -> bool:
        assert isinstance(left, bytes)
        assert isinstance(right, bytes)
        seen.append((len(left), len(right)))
        return original(left, right)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    secret = Secret("psk-test-agent-1")

    assert secret.matches(b"psk-test-agent-1")
    assert not secret.matches(b"psk")
    assert not secret.matches(b"x" * 10_000)
    assert seen == [(32, 32), (32, 32), (32, 32)]


def test_equality_is_by_value() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
