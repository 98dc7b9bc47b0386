"""Tests for path patterns: matching, refusal of bad patterns, the combined
set, and the limits that keep matching linear."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outpost.policy.patterns import compile_pattern, compile_patterns


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        pytest.param("/repos/*/issues", "/repos/acme/issues", True, id="star-one"),
        pytest.param(
            "/repos/*/issues",
            "/repos/acme/app/hooks/issues",
            False,
            id="glob-star-crosses-slash",
        ),
        pytest.param("/repos/*/issues", "/repos//issues", False, id="star-empty"),
        pytest.param("/repos/*/*/pulls", "/repos/acme/app/pulls", True, id="two-stars"),
        pytest.param(
            "/repos/*/*/pulls",
            "/repos/acme/app/pulls/1/merge",
            False,
            id="pattern-anchored-at-end",
        ),
        pytest.param(
            "/repos/*/issues",
            "/admin/keys/repos/a/issues",
            False,
            id="pattern-anchored-at-start",
        ),
        pytest.param("/a/*.json", "/a/x.json", True, id="star-with-suffix"),
        pytest.param("/a/*.json", "/a/.json", False, id="star-needs-a-character"),
        pytest.param("/a/{id}", "/a/42", True, id="parameter"),
        pytest.param("/a/{id}", "/a/4/2", False, id="parameter-crosses-slash"),
        pytest.param("/p/**/holdings", "/p/a/b/c/holdings", True, id="double-star"),
        pytest.param("/p/**/holdings", "/p/a/holdings", True, id="double-star-one"),
        pytest.param("/p/**/holdings", "/p/holdings", False, id="double-star-empty"),
        pytest.param("/p/**", "/p/a/b/", True, id="double-star-tail"),
        pytest.param("/a/b", "/a/b/", False, id="trailing-slash-significant"),
        pytest.param("/a/b/", "/a/b", False, id="trailing-slash-required"),
        pytest.param("/A/b", "/a/b", False, id="case-sensitive"),
        pytest.param("/a/%7e", "/a/~", True, id="pattern-escape-canonicalised"),
        pytest.param("/a/%3a", "/a/%3A", True, id="pattern-hex-upper-cased"),
        pytest.param("/a/{b}", "/a/{b}", True, id="parameter-not-literal"),
        pytest.param("/a/|", "/a/%7C", True, id="pattern-unsafe-char-encoded"),
        pytest.param("/a.b", "/aXb", False, id="dot-is-literal"),
        pytest.param("/a+", "/aa", False, id="plus-is-literal"),
    ],
)
def test_matches(pattern: str, path: str, expected: bool) -> None:
    assert compile_pattern(pattern).matches(path) is expected


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        pytest.param("repos/*", "must start with '/'", id="no-leading-slash"),
        pytest.param("", "must start with '/'", id="empty"),
        pytest.param("/a/***", "'***'", id="triple-star"),
        pytest.param("/a/{id", "unbalanced brace", id="open-brace"),
        pytest.param("/a/id}", "unbalanced brace", id="close-brace"),
        pytest.param("/a/{}", "parameter '{}'", id="empty-parameter"),
        pytest.param("/a/{x/y}", "parameter", id="parameter-with-slash"),
        pytest.param("/a/{{x}}", "brace", id="nested-braces"),
        pytest.param("/**/x/**", "more than one '**'", id="two-double-stars"),
        pytest.param("/a/*{id}", "two wildcards", id="adjacent-wildcards"),
        pytest.param("/a/*-*", "two wildcards", id="two-wildcards-one-segment"),
        pytest.param("/a/***/b", "'***'", id="triple-star-middle"),
        pytest.param("/a//b", "empty segment", id="pattern-empty-segment"),
        pytest.param("/a/../b", "dot segment", id="pattern-dot-segment"),
        pytest.param("/*/..", "dot segment", id="pattern-trailing-dot-segment"),
        pytest.param("/a%2Fb/*", "encoded separator", id="pattern-encoded-slash"),
        pytest.param("/a\\b", "backslash", id="pattern-backslash"),
        pytest.param("/a/%zz", "invalid percent", id="pattern-bad-escape"),
    ],
)
def test_rejects_invalid_pattern(pattern: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="pattern") as info:
        compile_pattern(pattern)
    assert fragment in str(info.value)
    assert repr(pattern) in str(info.value)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/repos/acme/app/issues", 0, id="first-rule"),
        pytest.param("/repos/acme/app/issues/7", 2, id="later-rule"),
        pytest.param("/repos/acme/app", 1, id="first-match-wins-over-later"),
        pytest.param("/nothing", None, id="no-match"),
    ],
)
def test_set_returns_first_match(path: str, expected: int | None) -> None:
    patterns = compile_patterns(
        ["/repos/*/*/issues", "/repos/*/*", "/repos/*/*/issues/*"]
    )
    assert patterns.first_match(path) == expected


def test_empty_set_matches_nothing() -> None:
    assert compile_patterns([]).first_match("/") is None


def test_set_lists_every_match() -> None:
    patterns = compile_patterns(["/a/*", "/b", "/**"])
    assert patterns.all_matches("/a/x") == [0, 2]


@pytest.mark.parametrize(
    "pattern",
    [
        pytest.param("/**/x/*/y", id="double-star-then-stars"),
        pytest.param("/*/*/**/*/*/z", id="stars-around-double-star"),
        pytest.param("/{a}/{b}/{c}/{d}/e", id="many-parameters"),
    ],
)
def test_matching_stays_fast_on_hostile_paths(pattern: str) -> None:
    compiled = compile_pattern(pattern)
    hostile = "/x" * 8000 + "/"
    started = time.perf_counter()
    compiled.matches(hostile)
    assert time.perf_counter() - started < 0.05


_SEGMENT = st.text(alphabet="abc-._~%:@", min_size=1, max_size=5).filter(
    lambda text: text not in (".", "..") and "%" not in text
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_SEGMENT, min_size=2, max_size=6))
def test_star_never_crosses_slash(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    assert not compile_pattern("/*").matches(path)
    assert compile_pattern("/**").matches(path)
    stars = "/" + "/".join("*" for _ in segments)
    assert compile_pattern(stars).matches(path)
