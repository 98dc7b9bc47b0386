"""Canonical path and route classification."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from outpost.errors import NoRouteError
from outpost.policy.canonical import canonicalize_path
from outpost.policy.routes import RoutePolicy


def test_canonical_plain_path(benchmark: BenchmarkFixture) -> None:
    raw = b"/v2/tenants/acme/collection7/item-42"
    assert benchmark(canonicalize_path, raw) == raw.decode()


def test_canonical_escaped_path(benchmark: BenchmarkFixture) -> None:
    raw = b"/v2/tenants/acme%20corp/collection7/%7Eitem%2A"
    result = benchmark(canonicalize_path, raw)
    assert result == "/v2/tenants/acme%20corp/collection7/~item%2A"


def test_route_last_of_50_rules(
    benchmark: BenchmarkFixture, allowlist: RoutePolicy
) -> None:
    route = benchmark(allowlist.classify, "GET", "/v1/small.json")
    assert route.rule == "/v1/{name}"


def test_route_first_of_50_rules(
    benchmark: BenchmarkFixture, allowlist: RoutePolicy
) -> None:
    route = benchmark(allowlist.classify, "GET", "/v2/tenants/acme/collection0/7")
    assert route.category == "read"


def test_route_no_match(benchmark: BenchmarkFixture, allowlist: RoutePolicy) -> None:
    def classify() -> None:
        with pytest.raises(NoRouteError):
            allowlist.classify("GET", "/v3/unknown/path")

    benchmark(classify)
