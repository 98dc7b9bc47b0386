"""Header filtering, access-line emission and rate-limit decisions."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.micro.conftest import SDK_HEADERS, run_sync
from outpost.cli.logs import configure_logging
from outpost.proxy import accesslog
from outpost.proxy.accesslog import AccessRecord
from outpost.proxy.headers import filter_request_headers, filter_response_headers
from outpost.store.base import Window
from outpost.store.memory import MemoryStore


def test_request_header_filter(benchmark: BenchmarkFixture) -> None:
    extra = frozenset({"authorization", "x-http-method-override"})
    kept = benchmark(filter_request_headers, SDK_HEADERS, extra)
    assert ("x-outpost-auth", "bench-psk") not in kept
    assert len(kept) == 11


def test_response_header_filter(benchmark: BenchmarkFixture) -> None:
    headers = [
        ("content-type", "application/json"),
        ("content-length", "300"),
        ("connection", "keep-alive"),
        ("date", "Fri, 04 Dec 2026 17:00:00 GMT"),
        ("x-ratelimit-remaining", "4999"),
        ("openai-processing-ms", "120"),
        ("set-cookie", "a=1; Path=/"),
        ("set-cookie", "b=2; Path=/"),
    ]
    kept = benchmark(filter_response_headers, headers, frozenset())
    assert len(kept) == 7


@pytest.fixture
def null_stdout() -> Iterator[None]:
    """Send Outpost's log lines to /dev/null, set up as the worker does."""
    with open(os.devnull, "w") as sink:
        configure_logging("INFO")
        handler = logging.getLogger("outpost").handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(sink)
        yield
        accesslog.write_directly(None)
        logging.getLogger("outpost").handlers.clear()


def test_access_line(benchmark: BenchmarkFixture, null_stdout: None) -> None:
    record = AccessRecord("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "GET", "127.0.0.1")
    record.host_id = "bench-agent"
    record.provider = "bench"
    record.path = "/v1/small.json"
    record.category = "read"
    record.status = 200
    record.upstream_status = 200
    record.upstream_ms = 0.31
    benchmark(record.emit)


def test_rate_limit_take_two_windows(benchmark: BenchmarkFixture) -> None:
    store = MemoryStore()
    windows = [Window(1_000_000_000, 1000), Window(1_000_000_000, 3_600_000)]

    def take() -> bool:
        return run_sync(store.take("rl:bench:read", windows)).allowed

    assert benchmark(take)


def test_cooldown_then_take(benchmark: BenchmarkFixture) -> None:
    store = MemoryStore()
    windows = [Window(1_000_000_000, 1000), Window(1_000_000_000, 3_600_000)]

    def admit() -> bool:
        coroutine = store.take_after_cooldown(
            "cool:bench:read", "rl:bench:read", windows
        )
        remaining, result = run_sync(coroutine)
        return remaining == 0 and result is not None and result.allowed

    assert benchmark(admit)
