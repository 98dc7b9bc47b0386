"""Prometheus metrics, recorded once per request from its access record.

Every worker is a separate process, so ``outpost serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start: each worker writes
its samples to memory-mapped files there, and ``/metrics`` on any worker
merges the files of all of them. Without that variable (the application
built in-process, as some tests do) the samples stay in this process.

Requests are counted in plain Python numbers first. Every worker adds them
to the Prometheus values once per ``FLUSH_INTERVAL`` and before it renders
``/metrics``. So a scrape shows the serving worker's requests up to the
last one finished, and other workers' up to ``FLUSH_INTERVAL`` seconds
late. A worker that ends without a lifespan shutdown loses its last
interval.

Labels contain only configured names (provider, route category), fixed
words (decision, cache state, error code) and status numbers. They never
contain a header, a query value, a caller's address or another value a
caller chose, so no secret and no unbounded number of series reach a metric.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from outpost.proxy.accesslog import AccessRecord

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
RATE_LIMIT_CODES = frozenset({"PROXY_RATE_LIMITED", "PROXY_UPSTREAM_RATE_LIMITED"})
STORE_ERROR_CODE = "PROXY_STORE_UNAVAILABLE"
CACHE_STATES = frozenset({"HIT", "MISS", "IDEMPOTENT-HIT"})

# Upstream responses take from a few milliseconds to minutes (long model
# completions), so the buckets span 5 ms to 5 minutes.
UPSTREAM_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
# Admission without waiting is one store round trip, well under 5 ms, so the
# buckets above that count the requests that waited.
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "outpost_requests",
    "Requests answered, by provider, route category, decision and status.",
    ["provider", "category", "decision", "status"],
)
UPSTREAM_SECONDS = Histogram(
    "outpost_upstream_seconds",
    "Time from sending a request upstream to its response headers.",
    ["provider"],
    buckets=UPSTREAM_BUCKETS,
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "outpost_rate_limit_wait_seconds",
    "Time in rate-limit admission: taking tokens, waiting for them or a cooldown.",
    ["provider"],
    buckets=WAIT_BUCKETS,
)
RATE_LIMIT_REJECTIONS = Counter(
    "outpost_rate_limit_rejections",
    "Requests answered 429 by Outpost, by provider and error code.",
    ["provider", "code"],
)
CACHE_LOOKUPS = Counter(
    "outpost_cache_lookups",
    "Response cache and idempotency lookups, by provider and result.",
    ["provider", "result"],
)
STORE_ERRORS = Counter(
    "outpost_store_errors",
    "Requests answered 503 because the state store was unreachable.",
)

FLUSH_INTERVAL = 1.0
"""Seconds between two additions of the counted requests to the shared values."""

_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Counter | Histogram, *labels: str) -> Any:
    # labels() validates and locks on every call; a plain dict look-up of the
    # already bound child is several times cheaper on the request path.
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = metric.labels(*labels)
        _children[key] = child
    return child


class _PendingHistogram:
    """Bucket counts and the sum of observations not yet flushed."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, metric: Histogram) -> None:
        self.bounds: list[float] = metric._upper_bounds
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, amount: float) -> None:
        # The first bound at or above the amount, as Histogram.observe picks.
        self.counts[bisect_left(self.bounds, amount)] += 1
        self.total += amount


# Keyed by (metric, *label values). flush() empties them.
_pending_counts: dict[tuple[Any, ...], int] = {}
_pending_histograms: dict[tuple[Any, ...], _PendingHistogram] = {}
_flush_timer: asyncio.TimerHandle | None = None


def _count(*key: Any) -> None:
    _pending_counts[key] = _pending_counts.get(key, 0) + 1


def _observe(metric: Histogram, provider: str, amount: float) -> None:
    key = (metric, provider)
    pending = _pending_histograms.get(key)
    if pending is None:
        pending = _pending_histograms[key] = _PendingHistogram(metric)
    pending.observe(amount)


def observe_request(record: AccessRecord) -> None:
    """Record one finished request, once, where its access-log line is written."""
    provider = record.provider or ""
    category = record.category or ""
    _count(REQUESTS, provider, category, record.decision, record.status)

    if record.upstream_ms is not None:
        _observe(UPSTREAM_SECONDS, provider, record.upstream_ms / 1000)
    if record.rate_limit_wait_ms is not None:
        wait_seconds = record.rate_limit_wait_ms / 1000
        _observe(RATE_LIMIT_WAIT_SECONDS, provider, wait_seconds)
    if record.cache in CACHE_STATES:
        _count(CACHE_LOOKUPS, provider, record.cache)

    code = record.error_code
    if code in RATE_LIMIT_CODES:
        _count(RATE_LIMIT_REJECTIONS, provider, code)
    elif code == STORE_ERROR_CODE:
        _count(STORE_ERRORS)


def flush() -> None:
    """Add the requests counted since the last flush to the Prometheus values.

    Runs on the event loop, the only thread that calls observe_request().
    """
    counts = list(_pending_counts.items())
    _pending_counts.clear()
    for (metric, *labels), amount in counts:
        child = _child(metric, *map(str, labels)) if labels else metric
        child.inc(amount)

    histograms = list(_pending_histograms.items())
    _pending_histograms.clear()
    for (metric, provider), pending in histograms:
        child = _child(metric, provider)
        # NOTE: writes prometheus_client 0.26's private per-bucket values,
        # because Histogram has no public call that adds many observations.
        for value, amount in zip(child._buckets, pending.counts, strict=True):
            if amount:
                value.inc(amount)
        child._sum.inc(pending.total)


def start_flushing(interval: float = FLUSH_INTERVAL) -> None:
    """Flush every ``interval`` seconds on the running event loop."""
    loop = asyncio.get_running_loop()

    def tick() -> None:
        global _flush_timer
        flush()
        _flush_timer = loop.call_later(interval, tick)

    global _flush_timer
    _flush_timer = loop.call_later(interval, tick)


def stop_flushing() -> None:
    """Stop the periodic flush and flush what is left."""
    global _flush_timer
    if _flush_timer is not None:
        _flush_timer.cancel()
        _flush_timer = None
    flush()


def render() -> bytes:
    """Return the text exposition of every worker's samples.

    Reads one file per worker and metric type, so callers run it in a thread
    to keep the event loop free for proxied requests.
    """
    if MULTIPROCESS_VARIABLE not in os.environ:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
