"""Tests for the canonical path: accepted forms, refusals with reasons, and
properties that must hold for every input."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outpost.config.models import Timeouts
from outpost.config.urls import parse_base_url
from outpost.errors import BadRequestError
from outpost.policy.canonical import canonicalize_path
from outpost.proxy.http1 import Http1Transport
from tests.support.upstream import RecordingUpstream

CANONICAL_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"/", "/", id="root"),
        pytest.param(b"/repos/acme/app/issues", "/repos/acme/app/issues", id="plain"),
        pytest.param(b"/a/b/", "/a/b/", id="trailing-slash-kept"),
        pytest.param(b"/user/%6Beys", "/user/keys", id="unreserved-escape-decoded"),
        pytest.param(b"/%41%7a%2D%5f%7E", "/Az-_~", id="unreserved-any-case"),
        pytest.param(b"/a%3ab", "/a%3Ab", id="reserved-escape-upper-cased"),
        pytest.param(b"/a%20b", "/a%20b", id="space-escape-kept"),
        pytest.param(b"/a%252e", "/a%252e", id="encoded-percent-kept"),
        pytest.param(b"/a%3Bb", "/a%3Bb", id="encoded-semicolon-kept"),
        pytest.param(b"/a{b}|c", "/a%7Bb%7D%7Cc", id="braces-pipe-encoded"),
        pytest.param(b'/a"<>^`', "/a%22%3C%3E%5E%60", id="unsafe-ascii-encoded"),
        pytest.param("/café".encode(), "/caf%C3%A9", id="utf8-encoded"),
        pytest.param(b"/a\xff", "/a%FF", id="invalid-utf8-encoded"),
        pytest.param(b"/a#@evil:9002/", "/a%23@evil:9002/", id="hash-kept-as-path"),
        pytest.param(b"/a?b", "/a%3Fb", id="question-mark-kept-as-path"),
        pytest.param(b"/a/.../b", "/a/.../b", id="three-dots-not-dot-segment"),
        pytest.param(b"/a/.b/c.", "/a/.b/c.", id="dots-inside-segment"),
        pytest.param(b"/x:y@z!$&'()*+,=", "/x:y@z!$&'()*+,=", id="sub-delims-raw"),
    ],
)
def test_accepts(raw: bytes, expected: str) -> None:
    assert canonicalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"", "not_origin_form", id="empty-target"),
        pytest.param(b"*", "not_origin_form", id="asterisk-form"),
        pytest.param(b"http://127.0.0.1:9002/x", "not_origin_form", id="absolute"),
        pytest.param(b"HTTP://h/admin/keys", "not_origin_form", id="absolute-upper"),
        pytest.param(b"@127.0.0.1:9002/x", "not_origin_form", id="authority-like"),
        pytest.param(b"//127.0.0.1:9002/x", "not_origin_form", id="network-path"),
        pytest.param(b"///admin/keys", "not_origin_form", id="triple-slash"),
        pytest.param(b"/a/../b", "dot_segment", id="dot-dot"),
        pytest.param(b"/a/./b", "dot_segment", id="dot"),
        pytest.param(b"/a/..", "dot_segment", id="trailing-dot-dot"),
        pytest.param(b"/a/.", "dot_segment", id="trailing-dot"),
        pytest.param(b"/a/../", "dot_segment", id="dot-dot-slash"),
        pytest.param(b"/..", "dot_segment", id="root-dot-dot"),
        pytest.param(b"/a/%2e%2e/b", "dot_segment", id="dot-segment-encoded"),
        pytest.param(b"/a/%2E%2E/b", "dot_segment", id="dot-segment-encoded-upper"),
        pytest.param(b"/a/.%2e/b", "dot_segment", id="dot-segment-half-encoded"),
        pytest.param(b"/a/%2e./b", "dot_segment", id="dot-segment-other-half"),
        pytest.param(b"/a/%2e/b", "dot_segment", id="single-dot-encoded"),
        pytest.param(
            b"/repos/acme/app/issues/../../../../admin/keys",
            "dot_segment",
            id="dot-segments-escape-prefix",
        ),
        pytest.param(
            b"/repos/acme/app/issues/./../../../../admin/keys",
            "dot_segment",
            id="dot-and-dot-dot-escape-prefix",
        ),
        pytest.param(
            b"/repos/acme/app/issues/1/..", "dot_segment", id="dot-to-allowed"
        ),
        pytest.param(b"/a%2Fb", "encoded_separator", id="encoded-slash"),
        pytest.param(b"/a%2fb", "encoded_separator", id="encoded-slash-lower"),
        pytest.param(b"/a%5Cb", "encoded_separator", id="encoded-backslash"),
        pytest.param(b"/a%5cb", "encoded_separator", id="encoded-backslash-lower"),
        pytest.param(
            b"/%2F%2F127.0.0.1:9002/x", "encoded_separator", id="encoded-auth"
        ),
        pytest.param(
            b"/repos/acme/app/issues%2F..%2F..%2Fhooks/42",
            "encoded_separator",
            id="encoded-slash-with-dots",
        ),
        pytest.param(b"/a\\b", "backslash", id="raw-backslash"),
        pytest.param(b"/\\\\127.0.0.1:9002/x", "backslash", id="backslash-authority"),
        pytest.param(b"/a//b", "empty_segment", id="double-slash-middle"),
        pytest.param(b"/http://127.0.0.1:9002/x", "empty_segment", id="url-in-path"),
        pytest.param(b"/a/b//", "empty_segment", id="double-slash-end"),
        pytest.param(b"/repos/acme//app/hooks/1", "empty_segment", id="empty-in-repo"),
        pytest.param(b"/a\x00b", "control_character", id="raw-nul"),
        pytest.param(b"/a\tb", "control_character", id="raw-tab"),
        pytest.param(b"/a\nb", "control_character", id="raw-newline"),
        pytest.param(b"/a\x7fb", "control_character", id="raw-del"),
        pytest.param(b"/a%00b", "control_character", id="encoded-nul"),
        pytest.param(b"/a%0d%0ab", "control_character", id="encoded-crlf"),
        pytest.param(b"/a%09", "control_character", id="encoded-tab"),
        pytest.param(b"/a%7F", "control_character", id="encoded-del"),
        pytest.param(b"/a%ZZ", "invalid_percent_encoding", id="percent-not-hex"),
        pytest.param(b"/a%4", "invalid_percent_encoding", id="percent-one-digit"),
        pytest.param(b"/a%", "invalid_percent_encoding", id="percent-trailing"),
        pytest.param(b"/a%%41", "invalid_percent_encoding", id="percent-double"),
        pytest.param(b"/a;b", "path_parameter", id="semicolon"),
        pytest.param(b"/a;jsessionid=1/b", "path_parameter", id="matrix-parameter"),
        pytest.param(b"/..;/admin", "path_parameter", id="dot-dot-semicolon"),
        pytest.param(b"/a/%C0%AE%C0%AE/b", "overlong_utf8", id="overlong-dot-dot"),
        pytest.param(b"/a/%c0%af/b", "overlong_utf8", id="overlong-slash-lower"),
        pytest.param(b"/a/%C1%9C/b", "overlong_utf8", id="overlong-backslash"),
        pytest.param(b"/a/\xc0\xae/b", "overlong_utf8", id="overlong-raw-bytes"),
        pytest.param(b"/a/%E0%80%AE/b", "overlong_utf8", id="overlong-three-bytes"),
        pytest.param(b"/a/%F0%80%80%AE/b", "overlong_utf8", id="overlong-four-bytes"),
    ],
)
def test_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRequestError) as info:
        canonicalize_path(raw)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"/a;b=1/c", "/a;b=1/c", id="parameter-allowed"),
        pytest.param(b"/a;b=%3b", "/a;b=%3B", id="parameter-escape-normalised"),
    ],
)
def test_accepts_path_parameters_when_allowed(raw: bytes, expected: str) -> None:
    assert canonicalize_path(raw, allow_path_parameters=True) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"/..;/admin", "dot_segment", id="dot-dot-before-parameter"),
        pytest.param(b"/a/.;x/b", "dot_segment", id="dot-before-parameter"),
        pytest.param(b"/a/;x/b", "empty_segment", id="parameter-only-segment"),
    ],
)
def test_rejects_with_path_parameters_allowed(raw: bytes, reason: str) -> None:
    with pytest.raises(BadRequestError) as info:
        canonicalize_path(raw, allow_path_parameters=True)
    assert info.value.reason == reason


def test_message_truncates_long_path() -> None:
    raw = b"/" + b"a" * 5000 + b"/../x"
    with pytest.raises(BadRequestError) as info:
        canonicalize_path(raw)
    assert len(info.value.message) < 300
    assert "'..'" in info.value.message


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"/a{b}|c^d", id="braces"),
        pytest.param("/ключ/é".encode(), id="non-ascii"),
        pytest.param(b"/a#frag@evil/x", id="hash"),
        pytest.param(b"/a?b", id="question-mark"),
        pytest.param(b"/x:y@z!$&'()*+,=/%25/%3A", id="reserved"),
        pytest.param(b"/a/...%2E/", id="dots-with-escape"),
        pytest.param(b"/a%20b/%22q%22", id="escaped-space-and-quotes"),
    ],
)
async def test_upstream_target_keeps_path(raw: bytes) -> None:
    path = canonicalize_path(raw)
    upstream = RecordingUpstream()
    base = parse_base_url(upstream.url + "/prefix")
    transport = Http1Transport(base, Timeouts())
    url = base.origin + base.path_prefix + path + "?q=1"
    try:
        async with transport.open("GET", url, [], None) as response:
            while await response.read_chunk() is not None:
                pass
    finally:
        await transport.close()
        upstream.close()

    request = upstream.requests[0]
    assert request.path == "/prefix" + path
    assert request.query == "q=1"
    assert request.header("host") == f"127.0.0.1:{upstream.port}"


# Pieces that exercise every rule: safe characters, unreserved and reserved
# escapes, characters that must be encoded, and characters that are refused.
_SAFE_PIECES = [*"aZ0-._~!$&'()*+,=:@", "%2e", "%2E", "%41", "%3a", "%7e", "%C3%A9"]
_HOSTILE_PIECES = [*"{|é#? ;\\", "%25", "%3B", "%2F", "%00", "%", "%zz"]
_SEGMENT_CHARS = st.sampled_from([*_SAFE_PIECES, *_HOSTILE_PIECES])
_PATHS = st.lists(
    st.lists(_SEGMENT_CHARS, max_size=6).map("".join), min_size=1, max_size=6
).map(lambda segments: "/" + "/".join(segments))


def _accepted(raw: bytes) -> str | None:
    try:
        return canonicalize_path(raw)
    except BadRequestError:
        return None


@settings(max_examples=400, deadline=None)
@given(_PATHS)
def test_output_is_idempotent_and_clean(path: str) -> None:
    output = _accepted(path.encode())
    if output is None:
        return
    assert canonicalize_path(output.encode()) == output
    assert CANONICAL_CHARS.fullmatch(output)
    segments = output.split("/")[1:]
    assert all(segment not in (".", "..") for segment in segments)
    assert all(segments[:-1])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_str_or_bad_request(raw: bytes) -> None:
    output = _accepted(raw)
    assert output is None or isinstance(output, str)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=48))
def test_bytes_after_slash_give_clean_path(raw: bytes) -> None:
    output = _accepted(b"/" + raw)
    assert output is None or CANONICAL_CHARS.fullmatch(output)
