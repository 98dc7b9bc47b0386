"""Rate limits and upstream cooldowns shared by processes, workers and replicas."""

from __future__ import annotations

import email.utils
import time

import pytest

from tests.conftest import StartOutpost
from tests.proxy.state_helpers import (
    LOOPBACK_HOSTS,
    NO_WAIT,
    api_provider,
    assert_rate_limited,
)
from tests.support.burst import Call, burst, repeat, statuses
from tests.support.rawhttp import RawResponse
from tests.support.upstream import RecordedRequest, RecordingUpstream, Reply
from tests.support.valkey import ValkeyProcess

TEN_MINUTES_MS = 600_000


def check_burst(responses: list[RawResponse], allowed: int) -> None:
    """Exactly ``allowed`` responses came from the upstream, the rest are 429s."""
    assert statuses(responses) == {200: allowed, 429: len(responses) - allowed}
    for response in responses:
        if response.status == 429:
            assert_rate_limited(response, "PROXY_RATE_LIMITED")


def test_two_replicas_share_one_redis_limit(
    start_outpost: StartOutpost, upstream: RecordingUpstream, valkey: ValkeyProcess
) -> None:
    provider = api_provider(upstream, [(20, TEN_MINUTES_MS)])
    args = ["--store", valkey.url, *NO_WAIT]
    first = start_outpost([provider], hosts=LOOPBACK_HOSTS, args=args)
    second = start_outpost([provider], hosts=LOOPBACK_HOSTS, args=args)

    calls = repeat(Call(first.port, "GET", "/p/api/items"), 100)
    calls += repeat(Call(second.port, "GET", "/p/api/items"), 100)
    responses = burst(calls)

    check_burst(responses, 20)
    assert upstream.count == 20
    with valkey.client() as client:
        assert client.exists("outpost:{api:default}:rl")


def test_two_workers_share_the_sqlite_limit(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    provider = api_provider(upstream, [(20, TEN_MINUTES_MS)])
    outpost = start_outpost([provider], hosts=LOOPBACK_HOSTS, args=NO_WAIT, workers=2)

    responses = burst(repeat(Call(outpost.port, "GET", "/p/api/items"), 200))

    check_burst(responses, 20)
    assert upstream.count == 20


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_every_window_must_have_a_token(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    provider = api_provider(upstream, [(3, 1_000), (5, 60_000)])
    args = list(NO_WAIT)
    if store == "redis":
        valkey: ValkeyProcess = request.getfixturevalue("valkey")
        args += ["--store", valkey.url]
    outpost = start_outpost([provider], hosts=LOOPBACK_HOSTS, args=args, workers=2)
    calls = repeat(Call(outpost.port, "GET", "/p/api/items"), 50)

    started = time.monotonic()
    first = burst(calls)
    # The 1 s window refills a token every 1/3 s, so only a burst slowed
    # down by a loaded machine may see one more.
    refills = int((time.monotonic() - started) * 3)
    assert 3 <= upstream.count <= 3 + refills
    check_burst(first, upstream.count)

    # The 1 s window is full again, but the 60 s window has only 5 in all.
    time.sleep(1.1)
    allowed_before = upstream.count
    second = burst(calls)
    assert upstream.count == 5
    check_burst(second, 5 - allowed_before)


def test_queued_request_waits_for_a_token(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    provider = api_provider(upstream, [(1, 500)])
    outpost = start_outpost(
        [provider], hosts=LOOPBACK_HOSTS, args=["--rate-limit-queue-timeout", "2"]
    )

    started = time.monotonic()
    responses = burst(repeat(Call(outpost.port, "GET", "/p/api/items"), 3))
    elapsed = time.monotonic() - started

    assert statuses(responses) == {200: 3}
    # Two requests waited for a token refilled every 0.5 s.
    assert elapsed > 0.9
    assert upstream.count == 3


def retry_after_reply(value: str) -> Reply:
    return Reply(
        status=429,
        headers=[
            ("Content-Type", "application/json"),
            ("Retry-After", value),
            ("X-Upstream-Detail", "slow down"),
        ],
        body=b'{"error":"rate_limited","detail":"upstream"}',
    )


class FirstRequestLimited:
    """An upstream that responds 429 once, then 200."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.sent = False

    def __call__(self, request: RecordedRequest, connection: object) -> Reply:
        if self.sent:
            return Reply()
        self.sent = True
        return self.reply


def test_upstream_429_passes_through_and_cools_down(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = FirstRequestLimited(retry_after_reply("30"))
    outpost = start_outpost([api_provider(upstream)], hosts=LOOPBACK_HOSTS)

    passed = outpost.get("/p/api/items")
    cooled = outpost.get("/p/api/items")

    assert passed.status == 429
    assert passed.body == b'{"error":"rate_limited","detail":"upstream"}'
    assert passed.header("retry-after") == "30"
    assert passed.header("x-upstream-detail") == "slow down"
    assert passed.header("content-type") == "application/json"
    assert_rate_limited(cooled, "PROXY_UPSTREAM_RATE_LIMITED")
    assert 20 <= int(cooled.header("retry-after") or 0) <= 30
    assert upstream.count == 1


def test_short_cooldown_is_waited_out(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = FirstRequestLimited(retry_after_reply("1"))
    outpost = start_outpost([api_provider(upstream)], hosts=LOOPBACK_HOSTS)

    assert outpost.get("/p/api/items").status == 429
    started = time.monotonic()
    waited = outpost.get("/p/api/items")
    elapsed = time.monotonic() - started

    assert waited.status == 200
    assert elapsed > 0.7
    assert upstream.count == 2
    assert upstream.requests[1].received_at - upstream.requests[0].received_at > 0.9


def test_cooldown_from_http_date(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    moment = email.utils.formatdate(time.time() + 60, usegmt=True)
    upstream.handler = FirstRequestLimited(retry_after_reply(moment))
    outpost = start_outpost([api_provider(upstream)], hosts=LOOPBACK_HOSTS)

    assert outpost.get("/p/api/items").status == 429
    cooled = outpost.get("/p/api/items")

    assert_rate_limited(cooled, "PROXY_UPSTREAM_RATE_LIMITED")
    assert 45 <= int(cooled.header("retry-after") or 0) <= 61
    assert upstream.count == 1


def test_unparsable_retry_after_cools_one_second(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = FirstRequestLimited(retry_after_reply("soon-ish"))
    outpost = start_outpost(
        [api_provider(upstream)], hosts=LOOPBACK_HOSTS, args=NO_WAIT
    )

    assert outpost.get("/p/api/items").status == 429
    cooled = outpost.get("/p/api/items")
    time.sleep(1.05)
    after = outpost.get("/p/api/items")

    assert_rate_limited(cooled, "PROXY_UPSTREAM_RATE_LIMITED")
    assert cooled.header("retry-after") == "1"
    assert after.status == 200
    assert upstream.count == 2


def test_cooldown_is_shared_through_redis(
    start_outpost: StartOutpost, upstream: RecordingUpstream, valkey: ValkeyProcess
) -> None:
    upstream.handler = FirstRequestLimited(retry_after_reply("30"))
    args = ["--store", valkey.url]
    first = start_outpost([api_provider(upstream)], hosts=LOOPBACK_HOSTS, args=args)
    second = start_outpost([api_provider(upstream)], hosts=LOOPBACK_HOSTS, args=args)

    assert first.get("/p/api/items").status == 429
    cooled = second.get("/p/api/items")

    assert_rate_limited(cooled, "PROXY_UPSTREAM_RATE_LIMITED")
    assert upstream.count == 1
    # The cooldown shares the buckets' hash tag, so one cluster slot.
    with valkey.client() as client:
        assert 20_000 < client.pttl("outpost:{api:default}:cd") <= 30_000
