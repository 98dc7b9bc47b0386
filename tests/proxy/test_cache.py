"""The shared response cache: what is stored, what is replayed, and to whom."""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from typing import Any

import pytest
import yaml

from tests.conftest import StartOutpost
from tests.proxy.state_helpers import (
    OTHER_PSK,
    PSK,
    PSK_ENV,
    PSK_HOSTS,
    request_from,
)
from tests.support.outpost import OutpostServer
from tests.support.rawhttp import RawResponse
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

ISSUES = "/p/api/repos/acme/app/issues"
ONLY_AGENT_ONE: dict[str, Any] = {
    "hosts": [
        {"id": "agent-1", "cidrs": ["127.0.0.1/32"], "auth_token_env": "AGENT_ONE_PSK"}
    ]
}


class Pages:
    """An upstream whose responses carry a per-path counter in the body.

    ``headers`` maps a path to extra response headers; every response also
    gets ``Content-Type: application/json`` and ``Cache-Control: max-age=60``
    unless its headers set their own.
    """

    def __init__(self) -> None:
        self.headers: dict[str, list[tuple[str, str]]] = {}
        self.status: dict[str, int] = {}
        self.counts: Counter[str] = Counter()

    def __call__(self, request: RecordedRequest, connection: Connection) -> Reply:
        self.counts[request.path] += 1
        extra = self.headers.get(request.path, [])
        names = {name.lower() for name, _ in extra}
        headers = [("X-Upstream", "u1")]
        if "content-type" not in names:
            headers.append(("Content-Type", "application/json"))
        if "cache-control" not in names:
            headers.append(("Cache-Control", "max-age=60"))
        body = f'{{"path":"{request.path}","n":{self.counts[request.path]}}}'
        status = self.status.get(request.path, 200)
        return Reply(status=status, headers=headers + extra, body=body.encode())


def cached_provider(upstream: RecordingUpstream, **overrides: Any) -> dict[str, Any]:
    """Return an allowlist provider ``api`` that caches GETs of ``/repos/**``."""
    forwarding: dict[str, Any] = {
        "mode": "allowlist",
        "allow": [
            {"path": "/repos/**", "methods": ["GET", "HEAD"], "cache_ttl": 60},
            {
                "path": "/admin/**",
                "methods": ["GET"],
                "cache_ttl": 60,
                "sensitive": True,
            },
            {"path": "/live/**", "methods": ["GET"]},
        ],
        "rate_limits": {"default": [{"capacity": 10_000, "window_ms": 1_000}]},
    }
    forwarding.update(overrides)
    return {
        "name": "api",
        "base_url": upstream.url,
        "auth": {"type": "none"},
        "forwarding": forwarding,
    }


@pytest.fixture
def pages(upstream: RecordingUpstream) -> Pages:
    handler = Pages()
    upstream.handler = handler
    return handler


def agent_one(
    outpost: OutpostServer,
    target: str = ISSUES,
    headers: list[tuple[str, str]] | None = None,
    method: str = "GET",
) -> RawResponse:
    return outpost.request(method, target, [("X-Outpost-Auth", PSK), *(headers or [])])


def agent_two(
    outpost: OutpostServer,
    target: str = ISSUES,
    headers: list[tuple[str, str]] | None = None,
) -> RawResponse:
    sent = [("X-Outpost-Auth", OTHER_PSK), *(headers or [])]
    return request_from("127.0.0.2", outpost.port, "GET", target, sent)


def cached_entries(outpost: OutpostServer) -> list[bytes]:
    """Return every cached response in the server's SQLite state file."""
    with sqlite3.connect(outpost.workdir / "state.db") as connection:
        rows = connection.execute(
            "SELECT value FROM entry WHERE kind = 'cache'"
        ).fetchall()
    return [bytes(row[0]) for row in rows]


def start(
    start_outpost: StartOutpost, upstream: RecordingUpstream, **overrides: Any
) -> OutpostServer:
    provider = cached_provider(upstream, **overrides)
    return start_outpost([provider], hosts=PSK_HOSTS, env=PSK_ENV)


def test_second_get_is_served_from_cache(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    outpost = start(start_outpost, upstream)

    first = agent_one(outpost)
    second = agent_two(outpost)

    assert first.header("x-proxy-cache") == "MISS"
    assert second.header("x-proxy-cache") == "HIT"
    assert second.status == 200
    assert second.body == first.body
    assert second.header("x-upstream") == "u1"
    assert second.header_values("cache-control") == ["max-age=60"]
    assert second.header("content-type") == "application/json"
    assert first.header("age") is None
    assert second.header_values("age") in (["0"], ["1"])
    assert upstream.count == 1


def test_cache_hit_never_bypasses_policy(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    provider = cached_provider(upstream)
    # DEBUG logs the line each worker writes once it serves a reload.
    outpost = start_outpost(
        [provider], hosts=ONLY_AGENT_ONE, env=PSK_ENV, args=["--log-level", "DEBUG"]
    )
    assert agent_one(outpost).status == 200

    wrong_key = outpost.get(ISSUES, [("X-Outpost-Auth", "psk-wrong")])
    other_address = request_from(
        "127.0.0.2", outpost.port, "GET", ISSUES, [("X-Outpost-Auth", PSK)]
    )

    assert wrong_key.status == 401
    assert wrong_key.error_code == "PROXY_AUTH_REQUIRED"
    assert other_address.status == 403
    assert other_address.error_code == "PROXY_HOST_DENIED"

    provider["forwarding"]["allow"] = [
        {"path": "/repos/*/*/pulls", "methods": ["GET"], "cache_ttl": 60}
    ]
    reload_provider(outpost, provider)
    removed = first_rejection(outpost)

    assert removed.status == 404
    assert removed.error_code == "PROXY_NO_ROUTE"

    provider["forwarding"]["allow"] = [
        {"path": "/repos/**", "methods": ["GET"], "cache_ttl": 60}
    ]
    provider["forwarding"]["deny"] = ["/repos/*/*/issues"]
    reload_provider(outpost, provider)
    denied = first_rejection(outpost, after=404)

    assert denied.status == 403
    assert denied.error_code == "PROXY_PATH_DENIED"
    for response in (wrong_key, other_address, removed, denied):
        assert b'"n":1' not in response.body
        assert response.header("x-proxy-cache") is None
    assert upstream.count == 1


def reload_provider(outpost: OutpostServer, provider: dict[str, Any]) -> None:
    """Rewrite the provider file, send SIGHUP and wait until the worker serves it.

    The main process logs ``configuration reloaded`` when it signals the
    worker, before the worker has switched, so the worker's own DEBUG line
    is the one awaited.
    """
    path = outpost.provider_dir / f"{provider['name']}.yaml"
    path.write_text(yaml.safe_dump(provider, sort_keys=False))
    served = "serves the reloaded configuration"
    before = outpost.output().count(served)
    assert outpost.process is not None
    outpost.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while outpost.output().count(served) == before:
        assert time.monotonic() < deadline, outpost.output()
        time.sleep(0.05)


def first_rejection(outpost: OutpostServer, after: int = 200) -> RawResponse:
    """Repeat the cached request until the reloaded configuration answers it.

    Workers apply a reload a moment after the log line, and until then the
    old configuration, which still allows the path, serves the cached copy.
    """
    deadline = time.monotonic() + 10
    while True:
        response = agent_one(outpost)
        if response.status != after or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_cache_hits_take_no_rate_limit_tokens(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    limit = {"default": [{"capacity": 3, "window_ms": 60_000}]}
    outpost = start_outpost(
        [cached_provider(upstream, rate_limits=limit)],
        hosts=PSK_HOSTS,
        env=PSK_ENV,
        args=["--rate-limit-queue-timeout", "0"],
    )

    hits = [agent_one(outpost) for _ in range(5)]
    fresh = [agent_one(outpost, "/p/api/live/feed") for _ in range(3)]

    assert [r.status for r in hits] == [200] * 5
    assert [r.header("x-proxy-cache") for r in hits] == ["MISS"] + ["HIT"] * 4
    assert [r.status for r in fresh] == [200, 200, 429]
    assert fresh[2].error_code == "PROXY_RATE_LIMITED"
    bypass = agent_one(outpost, headers=[("Cache-Control", "no-cache")])
    assert bypass.status == 429
    assert pages.counts == {"/repos/acme/app/issues": 1, "/live/feed": 2}


UNSHAREABLE: dict[str, list[tuple[str, str]]] = {
    "/repos/a/private": [("Cache-Control", "private, max-age=60")],
    "/repos/a/no-store": [("Cache-Control", "no-store")],
    "/repos/a/no-cache": [("Cache-Control", "no-cache")],
    "/repos/a/max-age-0": [("Cache-Control", "max-age=0")],
    "/repos/a/s-maxage-0": [("Cache-Control", "s-maxage=0, max-age=60")],
    "/repos/a/bad-age": [("Cache-Control", "max-age=soon")],
    "/repos/a/set-cookie": [("Cache-Control", "max-age=60"), ("Set-Cookie", "s=1")],
    "/repos/a/private-later": [
        ("Cache-Control", "max-age=60"),
        ("Cache-Control", "private"),
    ],
    "/repos/a/vary-star": [("Cache-Control", "max-age=60"), ("Vary", "*")],
    "/repos/a/events": [
        ("Cache-Control", "max-age=60"),
        ("Content-Type", "text/event-stream"),
    ],
    "/admin/keys": [("Cache-Control", "public, max-age=60")],
}
"""Responses a shared cache must not store, by path; /admin is a sensitive route."""


def test_unshareable_answers_are_not_cached(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    pages.headers.update(UNSHAREABLE)
    outpost = start(start_outpost, upstream)

    for path, headers in UNSHAREABLE.items():
        first = agent_one(outpost, "/p/api" + path)
        second = agent_two(outpost, "/p/api" + path)

        assert (first.status, second.status) == (200, 200), path
        assert second.header("x-proxy-cache") != "HIT", path
        assert b'"n":2' in second.body, path
        sent = [value for name, value in headers if name == "Cache-Control"]
        assert second.header_values("cache-control") == sent, path
    assert cached_entries(outpost) == []
    assert set(pages.counts.values()) == {2}


def test_set_cookie_is_never_replayed(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    pages.headers["/repos/acme/app/issues"] = [("Set-Cookie", "session=agent-1")]
    outpost = start(start_outpost, upstream)

    agent_one(outpost)
    second = agent_two(outpost)

    assert second.header_values("set-cookie") == ["session=agent-1"]
    assert b'"n":2' in second.body
    assert all(b"set-cookie" not in entry.lower() for entry in cached_entries(outpost))


def test_agent_no_cache_bypasses_lookup(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    outpost = start(start_outpost, upstream)
    agent_one(outpost)

    refreshed = agent_two(outpost, headers=[("Cache-Control", "no-cache")])
    pragma = agent_two(outpost, headers=[("Pragma", "no-cache")])
    after = agent_one(outpost)

    assert refreshed.header("x-proxy-cache") == "BYPASS"
    assert b'"n":2' in refreshed.body
    assert pragma.header("x-proxy-cache") == "BYPASS"
    # The response fetched for no-cache replaced the stored one.
    assert after.header("x-proxy-cache") == "HIT"
    assert after.body == pragma.body
    assert upstream.count == 3


def test_agent_no_store_is_not_stored(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    outpost = start(start_outpost, upstream)

    private = agent_one(outpost, headers=[("Cache-Control", "no-store")])
    after = agent_two(outpost)

    assert private.header("x-proxy-cache") == "BYPASS"
    assert after.header("x-proxy-cache") == "MISS"
    assert upstream.count == 2


def test_vary_keys_on_request_headers(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    pages.headers["/repos/acme/app/issues"] = [("Vary", "Accept-Language")]
    outpost = start(start_outpost, upstream)
    english = [("Accept-Language", "en")]

    first = agent_one(outpost, headers=english)
    same = agent_two(outpost, headers=english)
    german = agent_one(outpost, headers=[("Accept-Language", "de")])
    missing = agent_one(outpost)

    assert [r.header("x-proxy-cache") for r in (first, same, german, missing)] == [
        "MISS",
        "HIT",
        "MISS",
        "MISS",
    ]
    assert same.body == first.body
    assert upstream.count == 3


def test_head_is_served_from_cached_get(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    outpost = start(start_outpost, upstream)
    got = agent_one(outpost)

    head = agent_one(outpost, method="HEAD")

    assert head.status == 200
    assert head.header("x-proxy-cache") == "HIT"
    assert head.header("content-length") == str(len(got.body))
    assert head.body == b""
    assert upstream.count == 1


def test_head_answer_is_never_stored(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    outpost = start(start_outpost, upstream)

    head = agent_one(outpost, method="HEAD")
    got = agent_one(outpost)

    assert head.header("x-proxy-cache") == "MISS"
    assert got.header("x-proxy-cache") == "MISS"
    assert got.body == b'{"path":"/repos/acme/app/issues","n":2}'
    assert [request.method for request in upstream.requests] == ["HEAD", "GET"]


def test_partial_content_is_not_cached(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    pages.status["/repos/acme/app/issues"] = 206
    outpost = start(start_outpost, upstream)

    partial = agent_one(outpost, headers=[("Range", "bytes=0-3")])
    del pages.status["/repos/acme/app/issues"]
    full = agent_one(outpost)
    again = agent_one(outpost, headers=[("Range", "bytes=0-3")])

    assert partial.status == 206
    assert partial.header("x-proxy-cache") == "BYPASS"
    assert full.status == 200
    assert full.header("x-proxy-cache") == "MISS"
    assert again.header("x-proxy-cache") == "BYPASS"
    assert upstream.count == 3


def test_upstream_max_age_shortens_the_ttl(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    pages.headers["/repos/acme/app/issues"] = [("Cache-Control", "max-age=2")]
    outpost = start(start_outpost, upstream)

    agent_one(outpost)
    hit = agent_one(outpost)
    time.sleep(2.1)
    expired = agent_one(outpost)

    assert hit.header("x-proxy-cache") == "HIT"
    assert expired.header("x-proxy-cache") == "MISS"
    assert upstream.count == 2


def test_uncached_route_says_bypass(
    start_outpost: StartOutpost, upstream: RecordingUpstream, pages: Pages
) -> None:
    outpost = start(start_outpost, upstream)

    responses = [agent_one(outpost, "/p/api/live/feed") for _ in range(2)]

    assert [r.header("x-proxy-cache") for r in responses] == ["BYPASS", "BYPASS"]
    assert upstream.count == 2
