"""Store outages: fail closed with 503, log once, recover without a restart."""

from __future__ import annotations

import threading
import time
from collections import Counter

from tests.conftest import StartOutpost
from tests.proxy.state_helpers import LOOPBACK_HOSTS, api_provider
from tests.support.outpost import OutpostServer
from tests.support.upstream import RecordingUpstream
from tests.support.valkey import ValkeyProcess

DOWN = "state store unavailable"
BACK = "state store reachable again"


def start(
    start_outpost: StartOutpost, upstream: RecordingUpstream, valkey: ValkeyProcess
) -> OutpostServer:
    provider = api_provider(
        upstream,
        allow=[{"path": "/cached/**", "methods": ["GET"], "cache_ttl": 60}],
    )
    return start_outpost([provider], hosts=LOOPBACK_HOSTS, args=["--store", valkey.url])


def test_outage_fails_closed_and_recovers(
    start_outpost: StartOutpost, upstream: RecordingUpstream, valkey: ValkeyProcess
) -> None:
    outpost = start(start_outpost, upstream, valkey)
    assert outpost.get("/p/api/items").status == 200

    valkey.kill()
    during = [
        outpost.get("/p/api/items"),
        outpost.get("/p/api/cached/page"),
        outpost.request(
            "POST", "/p/api/orders", [("Idempotency-Key", "k-1")], b'{"n":1}'
        ),
        outpost.get("/readyz"),
    ]

    for response in during:
        assert response.status == 503
        assert response.error_code == "PROXY_STORE_UNAVAILABLE"
        assert response.header("content-type") == "application/json"
    assert upstream.count == 1
    assert outpost.output().count(DOWN) == 1

    valkey.start()
    recovered = outpost.get("/p/api/items")

    assert recovered.status == 200
    assert outpost.get("/readyz").status == 200
    assert upstream.count == 2
    assert outpost.output().count(BACK) == 1


def test_each_outage_is_logged_once(
    start_outpost: StartOutpost, upstream: RecordingUpstream, valkey: ValkeyProcess
) -> None:
    outpost = start(start_outpost, upstream, valkey)

    for outage in (1, 2):
        valkey.stop()
        for _ in range(5):
            assert outpost.get("/p/api/items").status == 503
        valkey.start()
        assert outpost.get("/p/api/items").status == 200
        assert outpost.output().count(DOWN) == outage
        assert outpost.output().count(BACK) == outage
    assert upstream.count == 2
    assert f"redis://127.0.0.1:{valkey.port}/0" in outpost.output()


def test_script_flush_is_survived(
    start_outpost: StartOutpost, upstream: RecordingUpstream, valkey: ValkeyProcess
) -> None:
    outpost = start(start_outpost, upstream, valkey)
    assert outpost.get("/p/api/items").status == 200

    with valkey.client() as client:
        client.script_flush()
    after = outpost.get("/p/api/items")
    posted = outpost.request(
        "POST", "/p/api/orders", [("Idempotency-Key", "k-2")], b'{"n":2}'
    )

    assert after.status == 200
    assert posted.status == 200
    assert upstream.count == 3
    assert DOWN not in outpost.output()


def test_outage_under_traffic_forwards_nothing(
    start_outpost: StartOutpost, upstream: RecordingUpstream, valkey: ValkeyProcess
) -> None:
    outpost = start(start_outpost, upstream, valkey)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def send_until_stopped() -> None:
        while not stop.is_set():
            status = outpost.get("/p/api/items").status
            with lock:
                statuses[status] += 1

    senders = [threading.Thread(target=send_until_stopped) for _ in range(4)]
    for sender in senders:
        sender.start()
    time.sleep(0.3)
    valkey.kill()
    time.sleep(0.5)
    valkey.start()
    time.sleep(0.5)
    stop.set()
    for sender in senders:
        sender.join(10)

    assert set(statuses) == {200, 503}
    # Every 503 was decided before forwarding: only 200s reached the upstream.
    assert upstream.count == statuses[200]
    assert outpost.output().count(DOWN) == 1
    assert outpost.get("/p/api/items").status == 200
