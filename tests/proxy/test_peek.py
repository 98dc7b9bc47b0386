"""Reading a small JSON response body ahead, for auth modules that inspect it."""

from __future__ import annotations

import pytest

from outpost.proxy.peek import MAX_PEEKED_BODY, is_small_json, peek_body
from outpost.proxy.transport import UpstreamResponse


class ScriptedResponse(UpstreamResponse):
    """An upstream response that yields the given chunks and counts reads."""

    def __init__(self, headers: list[tuple[str, str]], chunks: list[bytes]) -> None:
        self.status = 200
        self.headers = headers
        self.chunks = list(chunks)
        self.reads = 0

    async def read_chunk(self) -> bytes | None:
        self.reads += 1
        return self.chunks.pop(0) if self.chunks else None


async def drain(response: UpstreamResponse) -> bytes:
    parts = []
    while (chunk := await response.read_chunk()) is not None:
        parts.append(chunk)
    return b"".join(parts)


async def test_small_json_is_read_and_replayed() -> None:
    chunks = [b'{"error":', b'"invalid_auth"}']
    upstream = ScriptedResponse([("content-type", "application/json")], chunks)

    response, body = await peek_body(upstream)

    assert body == b'{"error":"invalid_auth"}'
    assert await drain(response) == body
    assert response.status == 200


async def test_large_chunked_json_streams_whole() -> None:
    chunks = [b"[" + b"1," * 20_000, b"2," * 20_000, b"3]"]
    upstream = ScriptedResponse([("content-type", "application/json")], chunks)

    response, body = await peek_body(upstream)

    assert body is None
    assert await drain(response) == b"".join(chunks)


async def test_declared_large_body_is_not_read() -> None:
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(MAX_PEEKED_BODY + 1)),
    ]
    upstream = ScriptedResponse(headers, [b"{}"])

    response, body = await peek_body(upstream)

    assert body is None
    assert response is upstream
    assert upstream.reads == 0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([("content-type", "application/json; charset=utf-8")], True),
        ([("content-type", "application/problem+json")], True),
        ([("content-type", "Application/JSON")], True),
        ([("content-type", "text/event-stream")], False),
        ([("content-type", "text/plain")], False),
        ([], False),
        ([("content-type", "application/json"), ("content-length", "65536")], True),
        ([("content-type", "application/json"), ("content-length", "65537")], False),
        ([("content-type", "application/json"), ("content-length", "x")], False),
    ],
)
def test_only_small_json_is_peeked(
    headers: list[tuple[str, str]], expected: bool
) -> None:
    assert is_small_json(headers) is expected


async def test_event_stream_is_untouched() -> None:
    upstream = ScriptedResponse([("content-type", "text/event-stream")], [b"data: 1"])

    response, body = await peek_body(upstream)

    assert body is None
    assert response is upstream
    assert upstream.reads == 0
