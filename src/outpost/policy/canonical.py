"""The canonical request path: one form that is both checked and forwarded.

:func:`canonicalize_path` turns the raw path bytes of a request into the only
string the policy ever matches and the proxy ever forwards (after the base
URL's path prefix). Because the two are the same string, no later layer can
resolve the path into something the policy did not see.

Contract, following RFC 3986 section 3.3 and the WHATWG URL parser that the
upstream HTTP client uses:

- The target must be origin-form: one leading ``/`` and no authority.
- Rejected, in any encoding: ``.`` and ``..`` segments, encoded ``/`` or ``\\``,
  a raw ``\\``, empty segments (a single trailing ``/`` is allowed and kept),
  control characters, invalid percent-escapes, and ``;`` path parameters
  unless the provider opts in.
- Rejected: overlong UTF-8 sequences, raw or escaped (``%C0%AE`` is an
  overlong ``.``). They are never valid UTF-8, and lenient decoders turn them
  into ``.``, ``/`` or ``\\`` after the policy has looked.
- Escapes of unreserved characters are decoded (``%6B`` becomes ``k``); every
  other escape is kept with upper-case hex.
- Raw bytes outside ``pchar`` (for example ``{``, ``|``, ``#``, non-ASCII) are
  percent-encoded, so the result holds only ``pchar``, ``/`` and ``%XX``. The
  WHATWG parser leaves such a string byte for byte unchanged.

This module must never resolve dot segments, collapse slashes, or decode a
separator: each of those would forward a path other than the one checked.
"""

from __future__ import annotations

import re
from typing import Final, NoReturn

from outpost.errors import BadRequestError

_SHOWN_CHARS: Final = 100

_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_SEPARATORS: Final = frozenset(b"/\\")

# The common case: only unreserved, sub-delims (without ";"), ":" and "@",
# non-empty segments that are not "." or "..", an optional trailing slash.
_FAST_SEGMENT: Final = rb"/(?!\.\.?(?:/|\Z))[A-Za-z0-9\-._~!$&'()*+,=:@]+"
_FAST_PATH: Final = re.compile(rb"(?:" + _FAST_SEGMENT + rb")*/?")

_CONTROL: Final = re.compile(rb"[\x00-\x1f\x7f]")
_BAD_PERCENT: Final = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# An escape, or one raw byte that is neither pchar, "/" nor "%".
_REWRITE: Final = re.compile(rb"%([0-9A-Fa-f]{2})|([^A-Za-z0-9\-._~!$&'()*+,;=:@/%])")
# Lead bytes of overlong UTF-8 forms, matched on the rewritten path, where
# every byte above 0x7F is an upper-case escape: C0 and C1 always, E0 before
# 80-9F, F0 before 80-8F.
_OVERLONG: Final = re.compile(r"%C[01]|%E0%[89]|%F0%8")


def canonicalize_path(raw_path: bytes, *, allow_path_parameters: bool = False) -> str:
    """Return the canonical form of ``raw_path``, or raise BadRequestError.

    ``raw_path`` is the request path exactly as received, without the query.
    The returned string is what the policy matches and what is forwarded.
    """
    if raw_path[:1] == b"/" and _FAST_PATH.fullmatch(raw_path):
        return raw_path.decode("ascii")

    _check_raw(raw_path, allow_path_parameters)
    path = _REWRITE.sub(lambda match: _rewrite(match, raw_path), raw_path)
    text = path.decode("ascii")
    if _OVERLONG.search(text):
        _reject(
            raw_path,
            "overlong_utf8",
            "contains an overlong UTF-8 sequence (such as %C0%AE), which some "
            "servers decode to '.', '/' or '\\'; send the plain character",
        )
    _check_segments(text, raw_path, allow_path_parameters)
    return text


def _check_raw(raw_path: bytes, allow_path_parameters: bool) -> None:
    if not raw_path.startswith(b"/") or raw_path.startswith(b"//"):
        _reject(
            raw_path,
            "not_origin_form",
            "is not origin-form; send a path that starts with a single '/' "
            "and carries no scheme or host",
        )
    if b"\\" in raw_path:
        _reject(raw_path, "backslash", "contains a backslash; use '/' instead")
    if _CONTROL.search(raw_path):
        _reject(
            raw_path,
            "control_character",
            "contains a control character; percent-encode data, never send it raw",
        )
    if _BAD_PERCENT.search(raw_path):
        _reject(
            raw_path,
            "invalid_percent_encoding",
            "has a '%' not followed by two hex digits; write a literal '%' as %25",
        )
    if not allow_path_parameters and b";" in raw_path:
        _reject_parameters(raw_path)


def _rewrite(match: re.Match[bytes], raw_path: bytes) -> bytes:
    escape = match.group(1)
    if escape is None:
        return b"%%%02X" % match.group(2)[0]

    value = int(escape, 16)
    if value in _UNRESERVED:
        return bytes((value,))
    if value in _SEPARATORS:
        _reject(
            raw_path,
            "encoded_separator",
            "contains an encoded '/' or '\\' (%2F or %5C); "
            "send real path segments instead",
        )
    if value < 0x20 or value == 0x7F:
        _reject(
            raw_path,
            "control_character",
            "contains an encoded control character (%00-%1F or %7F); remove it",
        )
    return b"%%%02X" % value


def _check_segments(path: str, raw_path: bytes, allow_path_parameters: bool) -> None:
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        # With parameters allowed, some servers drop ";..." before resolving
        # dot segments, so "..;x" must count as "..".
        name = segment.split(";", 1)[0] if allow_path_parameters else segment
        is_last = index == len(segments) - 1
        if not segment and is_last:
            continue
        if not name:
            _reject(
                raw_path,
                "empty_segment",
                "has an empty path segment ('//'); remove the extra '/'",
            )
        if name in (".", ".."):
            _reject(
                raw_path,
                "dot_segment",
                "has a '.' or '..' segment, raw or percent-encoded; "
                "send the resolved path instead",
            )


def _reject_parameters(raw_path: bytes) -> NoReturn:
    _reject(
        raw_path,
        "path_parameter",
        "contains ';' path parameters, which this provider does not accept; "
        "encode a literal ';' as %3B",
    )


def _reject(raw_path: bytes, reason: str, problem: str) -> NoReturn:
    raise BadRequestError(f"request path {_show(raw_path)} {problem}", reason=reason)


def _show(raw_path: bytes) -> str:
    shown = raw_path[:_SHOWN_CHARS].decode("ascii", "backslashreplace")
    suffix = "..." if len(raw_path) > _SHOWN_CHARS else ""
    return f"{shown!r}{suffix}"
