"""Shared inputs for the micro-benchmarks."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from bench.fixtures import allow_rules
from outpost.config.models import Forwarding
from outpost.policy.routes import RoutePolicy

T = TypeVar("T")

# What an OpenAI-style SDK sends, plus Outpost's own caller headers.
SDK_HEADERS = [
    ("host", "127.0.0.1:8080"),
    ("accept-encoding", "gzip, deflate"),
    ("connection", "keep-alive"),
    ("accept", "application/json"),
    ("content-type", "application/json"),
    ("user-agent", "OpenAI/Python 1.51.0"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "1.51.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.11.7"),
    ("authorization", "Bearer placeholder"),
    ("x-outpost-auth", "bench-psk"),
    ("x-provider", "bench"),
    ("content-length", "120"),
]


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coroutine.close()
    raise RuntimeError("the coroutine suspended; it needs an event loop")


@pytest.fixture(scope="session")
def allowlist() -> RoutePolicy:
    """The benchmark provider's 50-rule allowlist, compiled."""
    forwarding = Forwarding.model_validate(
        {"mode": "allowlist", "allow": allow_rules(), "deny": ["/v1/internal/**"]}
    )
    return RoutePolicy.from_forwarding(forwarding)
