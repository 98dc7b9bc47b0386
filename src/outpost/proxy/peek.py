"""Read a small JSON response body before it is streamed to the agent.

Some APIs reject a credential with a 200 and an error code in a JSON body,
so an auth module may request the body (``wants_response_body``) before the
proxy decides whether to invalidate the credential. Only a JSON body of at
most :data:`MAX_PEEKED_BODY` bytes is read ahead. Everything else, event
streams included, streams untouched, and the module then gets no body.
The bytes read ahead are replayed unchanged, so the agent receives exactly
what the upstream sent.
"""

from __future__ import annotations

from outpost.proxy.transport import UpstreamResponse

MAX_PEEKED_BODY = 64 * 1024


class PeekedResponse(UpstreamResponse):
    """An upstream response whose first chunks were already read."""

    def __init__(self, upstream: UpstreamResponse, chunks: list[bytes]) -> None:
        self.status = upstream.status
        self.headers = upstream.headers
        self._upstream = upstream
        self._chunks = chunks

    async def read_chunk(self) -> bytes | None:
        if self._chunks:
            return self._chunks.pop(0)
        return await self._upstream.read_chunk()


def is_small_json(headers: list[tuple[str, str]]) -> bool:
    """Return True for a JSON content type without a length above the limit."""
    content_type = ""
    length: str | None = None
    for name, value in headers:
        if name == "content-type":
            content_type = value.split(";", 1)[0].strip().lower()
        elif name == "content-length":
            length = value.strip()
    is_json = content_type == "application/json" or content_type.endswith("+json")
    if not is_json:
        return False
    return length is None or (length.isdigit() and int(length) <= MAX_PEEKED_BODY)


async def peek_body(
    upstream: UpstreamResponse,
) -> tuple[UpstreamResponse, bytes | None]:
    """Read a small JSON body ahead; return the response to stream and the body.

    The body is None when the response is not JSON or is longer than
    :data:`MAX_PEEKED_BODY`. In that case the chunks already read are still
    replayed by the returned response.
    """
    if not is_small_json(upstream.headers):
        return upstream, None
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_PEEKED_BODY:
        chunk = await upstream.read_chunk()
        if chunk is None:
            return PeekedResponse(upstream, chunks), b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    return PeekedResponse(upstream, chunks), None
