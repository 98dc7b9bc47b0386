"""Pure rules of the stateful steps: Retry-After parsing and cache decisions."""

from __future__ import annotations

import email.utils

import pytest

from outpost.proxy.state import (
    StoredResponse,
    is_lookup_allowed,
    is_store_allowed,
    limit_key,
    parse_retry_after,
    storable,
)

NOW = 1_800_000_000.0
Headers = list[tuple[str, str]]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30", 30.0),
        (" 2 ", 2.0),
        ("1.5", 1.5),
        ("0", 0.1),
        ("100000", 600.0),
        (None, 1.0),
        ("", 1.0),
        ("soon", 1.0),
        ("-5", 1.0),
        ("inf", 1.0),
        ("nan", 1.0),
        ("1e3", 1.0),
        (email.utils.formatdate(NOW + 45, usegmt=True), 45.0),
        (email.utils.formatdate(NOW - 45, usegmt=True), 0.1),
        ("Sun, 06 Nov 1994 08:49:37", 1.0),
    ],
)
def test_retry_after_values(value: str | None, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("headers", "lookup", "store"),
    [
        ([], True, True),
        ([("cache-control", "max-age=0")], True, True),
        ([("cache-control", "no-cache")], False, True),
        ([("cache-control", "No-Store")], False, False),
        ([("pragma", "no-cache")], False, True),
        ([("range", "bytes=0-9")], False, False),
    ],
)
def test_agent_cache_directives(headers: Headers, lookup: bool, store: bool) -> None:
    assert is_lookup_allowed(headers) is lookup
    assert is_store_allowed(headers) is store


@pytest.mark.parametrize(
    ("status", "headers", "ttl"),
    [
        (200, [], 60),
        (204, [], 60),
        (206, [], None),
        (301, [], None),
        (500, [], None),
        (200, [("cache-control", "max-age=10")], 10),
        (200, [("cache-control", "max-age=600")], 60),
        (200, [("cache-control", "s-maxage=5, max-age=30")], 5),
        (200, [("cache-control", "max-age=0")], None),
        (200, [("cache-control", 'max-age="20"')], 20),
        (200, [("cache-control", "max-age=-1")], None),
        (200, [("cache-control", "public, max-age=60")], 60),
        (200, [("cache-control", "max-age=60"), ("cache-control", "private")], None),
        (200, [("cache-control", 'private="set-cookie"')], None),
        (200, [("cache-control", "NO-STORE")], None),
        (200, [("set-cookie", "s=1")], None),
        (200, [("content-type", "text/event-stream; charset=utf-8")], None),
        (200, [("vary", "*")], None),
    ],
)
def test_shared_lifetime(status: int, headers: Headers, ttl: float | None) -> None:
    decision = storable(status, headers, [], 60)

    assert (decision[0] if decision else None) == ttl


def test_vary_records_request_values() -> None:
    headers = [("vary", "Accept-Language, accept-encoding"), ("vary", "X-Team")]
    request = [("accept-language", "en"), ("x-team", "a"), ("x-team", "b")]

    decision = storable(200, headers, request, 60)

    assert decision is not None
    assert decision[1] == (
        ("accept-language", "en"),
        ("accept-encoding", None),
        ("x-team", "a, b"),
    )


def test_stored_response_round_trip() -> None:
    stored = StoredResponse(
        201,
        [("content-type", "application/json"), ("x-a", "1"), ("x-a", "2")],
        b'{"id":1}\n{"more":true}',
        (("accept", "application/json"), ("x-missing", None)),
        NOW,
    )

    assert StoredResponse.decode(stored.encode()) == stored


def test_age_adds_time_in_cache_to_upstream_age() -> None:
    stored = StoredResponse(200, [("age", "7"), ("x-a", "1")], b"", (), NOW)

    assert stored.headers_with_age(NOW + 3.9) == [("x-a", "1"), ("age", "10")]
    assert stored.headers_with_age(NOW - 60)[-1] == ("age", "7")


def test_limit_key_joins_provider_and_category() -> None:
    assert limit_key("github", "search") == "github:search"
