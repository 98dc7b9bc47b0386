"""TokenClient against loopback servers: targets, limits, timeouts, messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from outpost.auth.base import CredentialError
from outpost.auth.client import MAX_RESPONSE_BYTES, TokenClient
from tests.support.outpost import free_port
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

ENDPOINT = "token endpoint of provider 'crm'"
SECRET = "s3cr3t-Q9VX"


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    server = RecordingUpstream()
    yield server
    server.close()


@pytest.fixture
async def client() -> AsyncIterator[TokenClient]:
    token_client = TokenClient(timeout=2.0)
    yield token_client
    await token_client.close()


def reply_with(reply: Reply) -> RecordingUpstream:
    return RecordingUpstream(lambda request, connection: reply)


async def test_post_sends_path_query_and_body(
    upstream: RecordingUpstream, client: TokenClient
) -> None:
    headers = [("content-type", "application/x-www-form-urlencoded")]
    url = f"{upstream.url}/oauth/token?tenant=a%20b&x=1"

    await client.post(url, headers, b"grant_type=client_credentials", ENDPOINT)

    request = upstream.requests[0]
    assert request.method == "POST"
    assert request.target == "/oauth/token?tenant=a%20b&x=1"
    assert request.body == b"grant_type=client_credentials"
    assert request.header("content-length") == "29"
    assert request.header("content-type") == "application/x-www-form-urlencoded"
    assert request.header("host") == f"127.0.0.1:{upstream.port}"


async def test_post_empty_path_sends_slash(
    upstream: RecordingUpstream, client: TokenClient
) -> None:
    await client.post(upstream.url, [], b"", ENDPOINT)

    assert upstream.requests[0].target == "/"


async def test_post_percent_encodes_non_ascii_target(
    upstream: RecordingUpstream, client: TokenClient
) -> None:
    await client.post(f"{upstream.url}/t/é x?q=ü", [], b"", ENDPOINT)

    assert upstream.requests[0].target == "/t/%C3%A9%20x?q=%C3%BC"


async def test_post_drops_fragment(
    upstream: RecordingUpstream, client: TokenClient
) -> None:
    await client.post(f"{upstream.url}/token#part", [], b"", ENDPOINT)

    assert upstream.requests[0].target == "/token"


async def test_post_returns_status_headers_body(client: TokenClient) -> None:
    reply = Reply(
        status=400,
        headers=[("Content-Type", "application/json"), ("X-Request-Id", "r-1")],
        body=b'{"error":"invalid_client"}',
    )
    server = reply_with(reply)
    try:
        response = await client.post(f"{server.url}/token", [], b"", ENDPOINT)
    finally:
        server.close()

    assert response.status == 400
    assert response.headers["x-request-id"] == "r-1"
    assert response.headers["content-type"] == "application/json"
    assert response.body == b'{"error":"invalid_client"}'


async def test_post_reuses_connection_per_origin(
    upstream: RecordingUpstream, client: TokenClient
) -> None:
    await client.post(f"{upstream.url}/a", [], b"", ENDPOINT)
    await client.post(f"{upstream.url}/b?c=d", [], b"", ENDPOINT)

    assert upstream.count == 2
    assert upstream.connections == 1


async def test_post_separates_origins(client: TokenClient) -> None:
    first = RecordingUpstream()
    second = RecordingUpstream()
    try:
        await client.post(f"{first.url}/token", [], b"", ENDPOINT)
        await client.post(f"{second.url}/token", [], b"", ENDPOINT)
    finally:
        first.close()
        second.close()

    assert first.count == 1
    assert second.count == 1


async def test_close_drops_pooled_connections(
    upstream: RecordingUpstream, client: TokenClient
) -> None:
    await client.post(f"{upstream.url}/a", [], b"", ENDPOINT)
    await client.close()
    await client.post(f"{upstream.url}/b", [], b"", ENDPOINT)

    assert upstream.connections == 2


async def test_post_accepts_body_at_limit(client: TokenClient) -> None:
    server = reply_with(Reply(body=b"x" * MAX_RESPONSE_BYTES))
    try:
        response = await client.post(f"{server.url}/token", [], b"", ENDPOINT)
    finally:
        server.close()

    assert len(response.body) == MAX_RESPONSE_BYTES


async def test_post_rejects_body_over_limit(client: TokenClient) -> None:
    server = reply_with(Reply(body=b"x" * (MAX_RESPONSE_BYTES + 1)))
    try:
        with pytest.raises(CredentialError) as caught:
            await client.post(f"{server.url}/token", [], b"", ENDPOINT)
    finally:
        server.close()

    assert str(caught.value) == (
        f"{ENDPOINT} returned more than {MAX_RESPONSE_BYTES} bytes"
    )


async def test_post_timeout_covers_whole_exchange() -> None:
    # Each chunk arrives well within the timeout, but the whole body does not,
    # so only a timeout over the whole exchange stops it.
    server = reply_with(Reply(chunks=[(0.2, b"{}")] * 10))
    client = TokenClient(timeout=0.7)
    try:
        with pytest.raises(CredentialError) as caught:
            await client.post(f"{server.url}/token?key={SECRET}", [], b"", ENDPOINT)
    finally:
        await client.close()
        server.close()

    assert str(caught.value) == f"{ENDPOINT} timed out; retry later"


async def test_post_unreachable_endpoint(client: TokenClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/token?key={SECRET}"

    with pytest.raises(CredentialError) as caught:
        await client.post(url, [], SECRET.encode(), ENDPOINT)

    assert str(caught.value) == f"{ENDPOINT} is unreachable; retry later"


def send_garbage(request: RecordedRequest, connection: Connection) -> None:
    connection.send(f"HTTP/1.1 abc {SECRET}\r\n\r\n".encode())


async def test_post_invalid_response_names_kind(client: TokenClient) -> None:
    server = RecordingUpstream(send_garbage)
    try:
        with pytest.raises(CredentialError) as caught:
            await client.post(
                f"{server.url}/token?key={SECRET}", [], SECRET.encode(), ENDPOINT
            )
    finally:
        server.close()

    message = str(caught.value)
    assert message == f"{ENDPOINT} failed (invalid HTTP response); retry later"
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    "url",
    [
        pytest.param(f"http://127.0.0.1:99999/token?key={SECRET}", id="port"),
        pytest.param(f"ftp://127.0.0.1/token?key={SECRET}", id="scheme"),
        pytest.param(f"http:///token?key={SECRET}", id="no-host"),
        pytest.param(f"http://[::1/token?key={SECRET}", id="bracket"),
    ],
)
async def test_post_invalid_url_hides_url(client: TokenClient, url: str) -> None:
    with pytest.raises(CredentialError) as caught:
        await client.post(url, [], b"", ENDPOINT)

    message = str(caught.value)
    assert message.startswith(f"{ENDPOINT} has an invalid URL")
    assert SECRET not in message
    assert caught.value.__suppress_context__
