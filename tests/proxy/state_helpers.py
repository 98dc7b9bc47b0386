"""Providers, hosts and checks shared by the tests of stateful pipeline steps."""

from __future__ import annotations

import socket
from typing import Any

from tests.support.rawhttp import RawResponse, read_response, request_bytes
from tests.support.upstream import RecordingUpstream

PSK = "psk-agent-one-5b1e"
OTHER_PSK = "psk-agent-two-77c0"
PSK_ENV = {"AGENT_ONE_PSK": PSK, "AGENT_TWO_PSK": OTHER_PSK}

LOOPBACK_HOSTS: dict[str, Any] = {
    "hosts": [{"id": "agents", "cidrs": ["127.0.0.0/8"], "can_call_sensitive": True}]
}
"""Every loopback address is one caller without a key."""

PSK_HOSTS: dict[str, Any] = {
    "hosts": [
        {
            "id": "agent-1",
            "cidrs": ["127.0.0.1/32"],
            "auth_token_env": "AGENT_ONE_PSK",
            "can_call_sensitive": True,
        },
        {
            "id": "agent-2",
            "cidrs": ["127.0.0.2/32"],
            "auth_token_env": "AGENT_TWO_PSK",
            "can_call_sensitive": True,
        },
    ]
}
"""Two callers with pre-shared keys: agent-1 on 127.0.0.1, agent-2 on 127.0.0.2."""

NO_WAIT = ["--rate-limit-queue-timeout", "0"]


def api_provider(
    upstream: RecordingUpstream,
    windows: list[tuple[int, int]] | None = None,
    **forwarding: Any,
) -> dict[str, Any]:
    """Return a transparent provider ``api`` with no credential.

    ``windows`` are (capacity, window_ms) pairs of the default category; the
    default is a limit high enough never to matter.
    """
    pairs = windows or [(10_000, 1_000)]
    settings: dict[str, Any] = {
        "mode": "transparent",
        "treat_writes_as_sensitive": False,
        "rate_limits": {"default": [{"capacity": c, "window_ms": w} for c, w in pairs]},
    }
    settings.update(forwarding)
    return {
        "name": "api",
        "base_url": upstream.url,
        "auth": {"type": "none"},
        "forwarding": settings,
    }


def assert_rate_limited(response: RawResponse, code: str) -> None:
    """Check a proxy-made 429 with both forms of the retry delay."""
    assert response.status == 429
    assert response.error_code == code
    retry_after = response.header("retry-after")
    assert retry_after is not None
    assert int(retry_after) >= 1
    metadata = response.json()["error"]["metadata"]  # type: ignore[index]
    assert metadata["retry_after"] > 0


def request_from(
    source: str,
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> RawResponse:
    """Send one request from local address ``source``, e.g. ``127.0.0.2``."""
    with socket.create_connection(
        ("127.0.0.1", port), timeout=10, source_address=(source, 0)
    ) as sock:
        sock.sendall(request_bytes(method, target, headers, body))
        return read_response(sock, head_request=method == "HEAD")
