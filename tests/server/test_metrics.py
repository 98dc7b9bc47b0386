"""/metrics over real Outpost processes: aggregation, labels, secrets, access."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from outpost.server.metrics import FLUSH_INTERVAL
from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.outpost import OutpostServer
from tests.support.upstream import RecordingUpstream, Reply

SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}
QUERY_VALUE = "qv_private_7c1d"


def provider(upstream: RecordingUpstream, **forwarding: Any) -> dict[str, Any]:
    """Return a provider with a bearer credential that points at ``upstream``."""
    return {
        "name": "echo",
        "base_url": upstream.url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {
            "mode": "transparent",
            "treat_writes_as_sensitive": False,
            "rate_limits": {"default": [{"capacity": 1000, "window_ms": 1000}]},
            **forwarding,
        },
    }


def scrape(
    outpost: OutpostServer,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of /metrics keyed by name and sorted labels."""
    response = outpost.get("/metrics")
    assert response.status == 200, response.body
    samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def requests_total(samples: dict[Any, float], **labels: str) -> float:
    """Sum ``outpost_requests_total`` over the samples that match ``labels``."""
    total = 0.0
    for (name, sample_labels), value in samples.items():
        if name != "outpost_requests_total":
            continue
        if all(dict(sample_labels).get(k) == v for k, v in labels.items()):
            total += value
    return total


def test_metrics_sum_every_worker(
    start_outpost: StartOutpost, upstream: RecordingUpstream, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    outpost = start_outpost(
        [provider(upstream)],
        env=SECRET_ENV,
        workers=2,
        args=["--metrics-dir", str(metrics_dir)],
    )

    # Each request opens a new connection; keep going until both workers
    # have written samples, so the scrape below must merge two files.
    sent = 0
    while len(list(metrics_dir.glob("counter_*.db"))) < 2 and sent < 200:
        assert outpost.get("/p/echo/items").status == 200
        sent += 1

    assert len(list(metrics_dir.glob("counter_*.db"))) == 2
    # The worker that does not serve the scrape adds its last requests to
    # the shared files within FLUSH_INTERVAL.
    deadline = time.monotonic() + FLUSH_INTERVAL + 5
    while time.monotonic() < deadline:
        if requests_total(scrape(outpost), provider="echo", status="200") >= sent:
            break
        time.sleep(0.05)
    for _ in range(6):
        samples = scrape(outpost)
        assert requests_total(samples, provider="echo", status="200") == sent
        assert (
            requests_total(
                samples, provider="echo", decision="allow", category="default"
            )
            == sent
        )


def test_metrics_count_denials_upstream_time_and_cache(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost(
        [
            provider(
                upstream,
                deny=["/admin/**"],
                allow=[{"path": "/cached", "methods": ["GET"], "cache_ttl": 60}],
            )
        ],
        env=SECRET_ENV,
    )

    assert outpost.get("/p/echo/admin/users").status == 403
    assert outpost.get("/p/echo/cached").status == 200
    assert outpost.get("/p/echo/cached").status == 200
    samples = scrape(outpost)

    denied = requests_total(samples, provider="echo", decision="deny", status="403")
    assert denied == 1
    upstream_count = samples[
        ("outpost_upstream_seconds_count", (("provider", "echo"),))
    ]
    assert upstream_count == 1
    hits = (("provider", "echo"), ("result", "HIT"))
    misses = (("provider", "echo"), ("result", "MISS"))
    assert samples[("outpost_cache_lookups_total", hits)] == 1
    assert samples[("outpost_cache_lookups_total", misses)] == 1
    waits = samples[("outpost_rate_limit_wait_seconds_count", (("provider", "echo"),))]
    assert waits == 1


def test_metrics_count_rate_limit_rejections(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    limited = provider(upstream)
    limited["forwarding"]["rate_limits"] = {
        "default": [{"capacity": 1, "window_ms": 60_000}]
    }
    outpost = start_outpost(
        [limited], env=SECRET_ENV, args=["--rate-limit-queue-timeout", "0"]
    )

    assert outpost.get("/p/echo/a").status == 200
    assert outpost.get("/p/echo/b").status == 429
    samples = scrape(outpost)

    key = (
        "outpost_rate_limit_rejections_total",
        (("code", "PROXY_RATE_LIMITED"), ("provider", "echo")),
    )
    assert samples[key] == 1


def test_metrics_contain_no_secret_or_query_value(
    start_outpost: StartOutpost,
) -> None:
    upstream = RecordingUpstream(lambda request, connection: Reply(status=201))
    try:
        outpost = start_outpost([provider(upstream)], env=SECRET_ENV)
        outpost.get(
            f"/p/echo/x?token={QUERY_VALUE}&{QUERY_VALUE}=1",
            [("Authorization", f"Bearer {TEST_SECRET}")],
        )
        outpost.get(f"/p/{QUERY_VALUE}/x")
        body = outpost.get("/metrics").body.decode()
    finally:
        upstream.close()

    assert 'status="201"' in body
    assert TEST_SECRET not in body
    assert QUERY_VALUE not in body


def test_metrics_reject_unknown_hosts(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    hosts = {"hosts": [{"id": "elsewhere", "cidrs": ["192.0.2.0/24"]}]}
    outpost = start_outpost([provider(upstream)], env=SECRET_ENV, hosts=hosts)

    response = outpost.get("/metrics")

    assert response.status == 403
    assert response.error_code == "PROXY_HOST_DENIED"
    assert outpost.get("/healthz").status == 200


def test_metrics_dir_emptied_at_start(
    start_outpost: StartOutpost, upstream: RecordingUpstream, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"\0" * 16)

    start_outpost(
        [provider(upstream)], env=SECRET_ENV, args=["--metrics-dir", str(metrics_dir)]
    )

    assert not stale.exists()
