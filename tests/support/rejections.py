"""Checks for Outpost's own rejections: the error envelope and the access log.

Every proxy-made error must be the one JSON envelope, and every request,
rejected or not, must leave one access-log line that names the decision.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from tests.support.outpost import OutpostServer
from tests.support.rawhttp import RawResponse


def new_request_id() -> str:
    """Return a fresh X-Request-Id, so a test can find its access-log line."""
    return "test-" + uuid.uuid4().hex


def assert_envelope(response: RawResponse, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is Outpost's error envelope; return its ``error``."""
    assert response.status == status, response.body
    assert response.header("content-type") == "application/json"
    body = orjson.loads(response.body)
    assert set(body) == {"status", "error"}
    assert body["status"] == "FAILURE"
    error = body["error"]
    assert set(error) == {"code", "message", "metadata"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert error["metadata"] is None or isinstance(error["metadata"], dict)
    return dict(error)


def access_line(
    outpost: OutpostServer, request_id: str, timeout: float = 3.0
) -> dict[str, Any]:
    """Return the access-log line of ``request_id``, waiting for it to appear.

    The line is written once the response is finished, so it may land a moment
    after the client has read the response.
    """
    deadline = time.monotonic() + timeout
    while True:
        for line in outpost.access_lines():
            if line["request_id"] == request_id:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no access-log line for request id {request_id}")
        time.sleep(0.02)
