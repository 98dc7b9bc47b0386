"""Idempotency-Key: one upstream call per key, replays, mismatches and retries."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import StartOutpost
from tests.proxy.state_helpers import (
    OTHER_PSK,
    PSK,
    PSK_ENV,
    PSK_HOSTS,
    api_provider,
    request_from,
)
from tests.support.burst import Call, burst, repeat
from tests.support.outpost import OutpostServer
from tests.support.rawhttp import RawResponse
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply
from tests.support.valkey import ValkeyProcess

CREATED = b'{"id":1,"title":"a"}'


class SlowCreate:
    """An upstream that responds to POSTs with 201 after a delay, or with 500."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.fail_keys: set[str] = set()

    def __call__(self, request: RecordedRequest, connection: Connection) -> Reply:
        time.sleep(self.delay)
        if request.header("idempotency-key") in self.fail_keys:
            return Reply(status=500, body=b'{"error":"boom"}')
        return Reply(
            status=201,
            headers=[("Content-Type", "application/json"), ("X-Created", "yes")],
            body=CREATED,
        )


def post(
    outpost: OutpostServer,
    key: str,
    body: bytes = b'{"title":"a"}',
    path: str = "/p/api/repos/acme/app/issues",
    psk: str = PSK,
) -> RawResponse:
    headers = [
        ("Idempotency-Key", key),
        ("X-Outpost-Auth", psk),
        ("Content-Type", "application/json"),
    ]
    return outpost.request("POST", path, headers, body)


def start(
    start_outpost: StartOutpost, upstream: RecordingUpstream, **kwargs: Any
) -> OutpostServer:
    return start_outpost(
        [api_provider(upstream)], hosts=PSK_HOSTS, env=PSK_ENV, **kwargs
    )


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_concurrent_duplicates_reach_upstream_once(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    upstream.handler = SlowCreate(delay=0.5)
    args: list[str] = []
    if store == "redis":
        valkey: ValkeyProcess = request.getfixturevalue("valkey")
        args = ["--store", valkey.url]
    outpost = start(start_outpost, upstream, args=args, workers=2)
    call = Call(
        outpost.port,
        "POST",
        "/p/api/repos/acme/app/issues",
        (("Idempotency-Key", "k-burst"), ("X-Outpost-Auth", PSK)),
        b'{"title":"a"}',
    )

    responses = burst(repeat(call, 50))

    assert upstream.count == 1
    created = [r for r in responses if r.status == 201]
    assert len(created) >= 1
    for response in responses:
        if response.status == 201:
            assert response.body == CREATED
        else:
            assert response.status == 409
            assert response.error_code == "PROXY_IDEMPOTENCY_IN_FLIGHT"
            assert response.header("retry-after") == "1"
    fresh = [r for r in created if r.header("x-proxy-cache") != "IDEMPOTENT-HIT"]
    assert len(fresh) == 1


def test_finished_result_is_replayed(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = SlowCreate()
    outpost = start(start_outpost, upstream)

    first = post(outpost, "k-1")
    replay = post(outpost, "k-1")

    assert first.status == 201
    assert first.header("x-proxy-cache") == "BYPASS"
    assert replay.status == 201
    assert replay.body == first.body
    assert replay.header("x-created") == "yes"
    assert replay.header("x-proxy-cache") == "IDEMPOTENT-HIT"
    assert upstream.count == 1


def test_same_key_for_other_request_is_422(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = SlowCreate()
    outpost = start(start_outpost, upstream)
    assert post(outpost, "k-1").status == 201

    other_body = post(outpost, "k-1", body=b'{"title":"b"}')
    other_path = post(outpost, "k-1", path="/p/api/repos/acme/other/issues")
    other_query = post(outpost, "k-1", path="/p/api/repos/acme/app/issues?x=1")

    for response in (other_body, other_path, other_query):
        assert response.status == 422
        assert response.error_code == "PROXY_IDEMPOTENCY_MISMATCH"
    assert upstream.count == 1


def test_mismatch_during_flight_is_422(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = SlowCreate(delay=1.0)
    outpost = start(start_outpost, upstream)
    call = Call(
        outpost.port,
        "POST",
        "/p/api/repos/acme/app/issues",
        (("Idempotency-Key", "k-2"), ("X-Outpost-Auth", PSK)),
        b'{"title":"a"}',
    )
    results: list[RawResponse] = []
    racing = threading.Thread(target=lambda: results.extend(burst(repeat(call, 10))))
    racing.start()
    deadline = time.monotonic() + 5
    while upstream.count == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    mismatch = post(outpost, "k-2", body=b'{"title":"other"}')
    racing.join()

    assert mismatch.status == 422
    assert mismatch.error_code == "PROXY_IDEMPOTENCY_MISMATCH"
    assert upstream.count == 1
    fresh = [r for r in results if r.header("x-proxy-cache") == "BYPASS"]
    assert len(fresh) == 1
    assert {r.status for r in results} <= {201, 409}


def test_key_is_scoped_by_caller(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = SlowCreate()
    outpost = start(start_outpost, upstream)
    assert post(outpost, "k-1").status == 201

    headers = [("Idempotency-Key", "k-1"), ("X-Outpost-Auth", OTHER_PSK)]
    other = request_from(
        "127.0.0.2",
        outpost.port,
        "POST",
        "/p/api/repos/acme/app/issues",
        headers,
        b'{"title":"a"}',
    )

    assert other.status == 201
    assert other.header("x-proxy-cache") == "BYPASS"
    assert upstream.count == 2


def test_server_error_releases_the_key(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    handler = SlowCreate()
    handler.fail_keys.add("k-3")
    upstream.handler = handler
    outpost = start(start_outpost, upstream)

    failed = post(outpost, "k-3")
    handler.fail_keys.clear()
    retried = post(outpost, "k-3")

    assert failed.status == 500
    assert retried.status == 201
    assert retried.header("x-proxy-cache") == "BYPASS"
    assert upstream.count == 2


@pytest.mark.parametrize("status", [408, 429])
def test_retryable_status_releases_the_key(
    start_outpost: StartOutpost, upstream: RecordingUpstream, status: int
) -> None:
    handler = SlowCreate()
    upstream.handler = lambda request, connection: (
        Reply(status=status, headers=[("Retry-After", "0")], body=b"{}")
        if upstream.count == 1
        else handler(request, connection)
    )
    outpost = start(start_outpost, upstream)

    first = post(outpost, "k-6")
    retried = post(outpost, "k-6")

    assert first.status == status
    assert retried.status == 201
    assert retried.header("x-proxy-cache") == "BYPASS"
    assert upstream.count == 2


def test_client_error_is_replayed(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(
        status=400, body=b'{"error":"bad title"}'
    )
    outpost = start(start_outpost, upstream)

    first = post(outpost, "k-4")
    replay = post(outpost, "k-4")

    assert (first.status, replay.status) == (400, 400)
    assert replay.body == b'{"error":"bad title"}'
    assert replay.header("x-proxy-cache") == "IDEMPOTENT-HIT"
    assert upstream.count == 1


def test_unreachable_upstream_releases_the_key(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    provider = api_provider(upstream)
    provider["base_url"] = "http://127.0.0.1:9"
    outpost = start_outpost([provider], hosts=PSK_HOSTS, env=PSK_ENV)

    first = post(outpost, "k-5")
    second = post(outpost, "k-5")

    assert first.status == 502
    assert second.status == 502
    assert second.error_code == "PROXY_UPSTREAM_ERROR"


@pytest.mark.parametrize(
    "keys",
    [["k-9", "k-10"], [""], ["  "]],
    ids=["two-keys", "empty", "blank"],
)
def test_ambiguous_key_rejected(
    start_outpost: StartOutpost, upstream: RecordingUpstream, keys: list[str]
) -> None:
    outpost = start(start_outpost, upstream)
    headers = [("Idempotency-Key", key) for key in keys]
    headers.append(("X-Outpost-Auth", PSK))

    response = outpost.request(
        "POST", "/p/api/repos/acme/app/issues", headers, b'{"title":"a"}'
    )

    assert response.status == 400
    assert response.error_code == "PROXY_BAD_REQUEST"
    assert upstream.count == 0


def test_repeated_same_key_accepted(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: Reply(status=201, body=CREATED)
    outpost = start(start_outpost, upstream)
    headers = [("Idempotency-Key", "k-11"), ("Idempotency-Key", "k-11")]
    headers.append(("X-Outpost-Auth", PSK))

    first = outpost.request(
        "POST", "/p/api/repos/acme/app/issues", headers, b'{"title":"a"}'
    )
    replay = post(outpost, "k-11")

    assert first.status == 201
    assert replay.header("x-proxy-cache") == "IDEMPOTENT-HIT"
    assert upstream.count == 1
