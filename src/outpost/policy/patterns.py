"""Path patterns of provider files, compiled to anchored regular expressions.

Syntax: ``*`` matches one or more characters inside one segment, never ``/``.
``**`` matches one or more characters across segments. ``{name}`` is the same
as ``*``. Everything else is literal. The whole path must match, case counts,
and a trailing slash is significant. Patterns are matched against the
canonical path (see :mod:`outpost.policy.canonical`), so their literal parts
are canonicalised the same way: ``%7E`` in a pattern means ``~``.

Two limits keep matching linear in the length of the path, because the path
is chosen by the caller and Python's regex engine backtracks: a pattern holds
at most one ``**``, and two wildcards must be separated by a ``/``. Patterns
outside these limits are rejected when the file loads, never at request time.

This module must never let ``*`` match ``/`` or an empty segment, never match
a prefix of the path, and never look at the query string.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from outpost.errors import BadRequestError
from outpost.policy.canonical import canonicalize_path

_TOKEN: Final = re.compile(r"\*+|\{[^{}]*\}|[{}]")
_PARAMETER: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_-]*\}")
_SEGMENT: Final = "[^/]+"
_ANY: Final = "(?s:.+)"
# Padding that turns a literal between wildcards into a complete path, so
# that the canonicaliser can check and normalise it.
_PAD_START: Final = "/x"
_PAD_END: Final = "x"


@dataclass(frozen=True)
class PathPattern:
    """One compiled pattern: its source text and its anchored regex."""

    source: str
    regex: str
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.regex))

    def matches(self, path: str) -> bool:
        """Return True if the whole canonical ``path`` matches."""
        return self._compiled.fullmatch(path) is not None


class PatternSet:
    """Several patterns in one regex, so that finding the first match is one
    search. Indices refer to the order the patterns were given in."""

    def __init__(self, patterns: Sequence[PathPattern]) -> None:
        self.patterns = tuple(patterns)
        alternatives = (
            f"(?P<p{index}>{pattern.regex})" for index, pattern in enumerate(patterns)
        )
        self._combined = re.compile("|".join(alternatives)) if patterns else None

    def first_match(self, path: str) -> int | None:
        """Return the index of the first pattern matching ``path``, else None."""
        if self._combined is None:
            return None
        match = self._combined.fullmatch(path)
        if match is None or match.lastgroup is None:
            return None
        return int(match.lastgroup[1:])

    def all_matches(self, path: str) -> list[int]:
        """Return the indices of every pattern matching ``path``, in order."""
        return [
            index
            for index, pattern in enumerate(self.patterns)
            if pattern.matches(path)
        ]


def compile_pattern(pattern: str) -> PathPattern:
    """Compile one pattern, or raise ValueError naming it and the fix."""
    if not pattern.startswith("/"):
        raise _invalid(pattern, "must start with '/'")

    parts: list[str] = []
    wildcards: list[str] = []
    literal_start = 0
    for token in _TOKEN.finditer(pattern):
        literal = pattern[literal_start : token.start()]
        _check_separation(pattern, wildcards, literal)
        parts.append(_literal_regex(pattern, literal, bool(wildcards), True))
        parts.append(_wildcard_regex(pattern, token.group()))
        wildcards.append(token.group())
        literal_start = token.end()

    tail = pattern[literal_start:]
    parts.append(_literal_regex(pattern, tail, bool(wildcards), False))
    _check_shape(pattern, wildcards)
    return PathPattern(source=pattern, regex="".join(parts))


def compile_patterns(patterns: Sequence[str]) -> PatternSet:
    """Compile patterns into one :class:`PatternSet`, keeping their order."""
    return PatternSet([compile_pattern(pattern) for pattern in patterns])


def _wildcard_regex(pattern: str, wildcard: str) -> str:
    if wildcard == "**":
        return _ANY
    if wildcard == "*" or _PARAMETER.fullmatch(wildcard):
        return _SEGMENT
    if wildcard.startswith("*"):
        raise _invalid(pattern, f"has {wildcard!r}; use '*' or '**'")
    if wildcard in ("{", "}"):
        raise _invalid(pattern, "has an unbalanced brace; write '{name}'")
    raise _invalid(
        pattern, f"has parameter {wildcard!r}; a name is letters, digits, '_' or '-'"
    )


def _literal_regex(pattern: str, literal: str, after: bool, before: bool) -> str:
    if not literal:
        return ""
    start = _PAD_START if after else ""
    end = _PAD_END if before else ""
    probe = start + literal + end
    try:
        canonical = canonicalize_path(probe.encode(), allow_path_parameters=True)
    except BadRequestError as exc:
        reason = (exc.reason or "invalid").replace("_", " ")
        raise _invalid(
            pattern, f"is not a canonical path ({reason}); write the path it matches"
        ) from exc

    return re.escape(canonical[len(start) : len(canonical) - len(end)])


def _check_separation(pattern: str, wildcards: list[str], literal: str) -> None:
    # Two wildcards in one segment make the regex backtrack with the square
    # of the segment length, and they never mean anything one would not.
    if wildcards and "/" not in literal:
        raise _invalid(pattern, "has two wildcards without a '/' between them")


def _check_shape(pattern: str, wildcards: list[str]) -> None:
    if wildcards.count("**") > 1:
        raise _invalid(
            pattern, "has more than one '**'; split it into several patterns"
        )


def _invalid(pattern: str, problem: str) -> ValueError:
    return ValueError(f"pattern {pattern!r} {problem}")
