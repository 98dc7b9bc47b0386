"""WebSocket upgrades get a clear, immediate refusal and never reach upstream."""

from __future__ import annotations

import time

import pytest

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.outpost import OutpostServer
from tests.support.upstream import RecordingUpstream

HANDSHAKE = [
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


@pytest.fixture
def outpost(start_outpost: StartOutpost, upstream: RecordingUpstream) -> OutpostServer:
    """Outpost with one transparent provider in front of ``upstream``."""
    provider = {
        "name": "github",
        "base_url": upstream.url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
    }
    return start_outpost([provider], env={"OUTPOST_TEST_SECRET": TEST_SECRET})


@pytest.mark.parametrize(
    ("upgrade", "selection"),
    [
        ("websocket", [("X-Provider", "github")]),
        ("WebSocket", []),
        ("h2c, websocket", []),
        ("websocket/13", []),
    ],
)
def test_websocket_upgrade_refused(
    outpost: OutpostServer,
    upstream: RecordingUpstream,
    upgrade: str,
    selection: list[tuple[str, str]],
) -> None:
    target = "/socket" if selection else "/p/github/socket"

    started = time.monotonic()
    response = outpost.get(target, [*selection, ("Upgrade", upgrade), *HANDSHAKE])

    assert response.status == 501
    assert response.error_code == "PROXY_WEBSOCKET_UNSUPPORTED"
    assert response.header("upgrade") is None
    assert time.monotonic() - started < 1.0
    assert upstream.connections == 0


def test_other_upgrade_forwarded_as_plain_request(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    response = outpost.get(
        "/p/github/x", [("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings")]
    )

    assert response.status == 200
    request = upstream.requests[0]
    assert request.header("upgrade") is None
    assert request.header("http2-settings") is None
