"""Vendor SDKs pointed at Outpost: the dummy key stays behind, the real one goes.

Each SDK insists on an API key, so the agent passes a made-up one. Outpost
must drop it and inject the configured secret, and the SDK must parse what
comes back, streamed responses included.
"""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import orjson
import pytest
import stripe
from slack_sdk import WebClient

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.outpost import OutpostServer
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

DUMMY_KEY = "sk-agent-dummy-DO-NOT-FORWARD"
SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}


def sdk_provider(
    name: str, base_url: str, auth: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Return a transparent provider that allows writes, as LLM APIs need."""
    return {
        "name": name,
        "base_url": base_url,
        "auth": auth or {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {"mode": "transparent", "treat_writes_as_sensitive": False},
    }


def json_reply(payload: dict[str, Any]) -> Reply:
    """Return a 200 JSON reply with ``payload`` as its body."""
    return Reply(body=orjson.dumps(payload))


def sse_reply(events: list[bytes]) -> Reply:
    """Return a chunked ``text/event-stream`` reply, one chunk per event."""
    return Reply(
        headers=[("Content-Type", "text/event-stream; charset=utf-8")],
        chunks=[(0.02, event) for event in events],
    )


def assert_only_secret_forwarded(upstream: RecordingUpstream) -> None:
    """Check that every upstream request lacks the dummy key but has the secret."""
    assert upstream.count >= 1
    for request in upstream.requests:
        assert DUMMY_KEY.encode() not in request.raw_head + request.body
        assert TEST_SECRET.encode() in request.raw_head


OPENAI_COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-test",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello from upstream"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


def openai_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
    """Return one ``chat.completion.chunk`` server-sent event."""
    chunk = {
        "id": "chatcmpl-2",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def openai_handler(request: RecordedRequest, connection: Connection) -> Reply:
    """Reply to chat completions, streamed when the request body asks for it."""
    if orjson.loads(request.body).get("stream"):
        return sse_reply(
            [
                openai_chunk({"role": "assistant", "content": ""}),
                openai_chunk({"content": "stre"}),
                openai_chunk({"content": "amed"}),
                openai_chunk({}, finish_reason="stop"),
                b"data: [DONE]\n\n",
            ]
        )
    return json_reply(OPENAI_COMPLETION)


@pytest.fixture
def openai_client(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> openai.OpenAI:
    """An OpenAI client whose base URL is Outpost's /p/openai/v1."""
    upstream.handler = openai_handler
    outpost = start_outpost([sdk_provider("openai", upstream.url)], env=SECRET_ENV)
    return openai.OpenAI(
        api_key=DUMMY_KEY, base_url=outpost.url + "/p/openai/v1", max_retries=0
    )


def test_openai_chat_completion(
    openai_client: openai.OpenAI, upstream: RecordingUpstream
) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}]
    )

    assert completion.choices[0].message.content == "hello from upstream"
    assert upstream.requests[0].method == "POST"
    assert upstream.requests[0].path == "/v1/chat/completions"
    assert upstream.requests[0].header("authorization") == f"Bearer {TEST_SECRET}"
    assert_only_secret_forwarded(upstream)


def test_openai_streamed_chat_completion(
    openai_client: openai.OpenAI, upstream: RecordingUpstream
) -> None:
    stream = openai_client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    parts = [chunk.choices[0].delta.content or "" for chunk in stream]

    assert "".join(parts) == "streamed"
    assert upstream.requests[0].header("authorization") == f"Bearer {TEST_SECRET}"
    assert_only_secret_forwarded(upstream)


ANTHROPIC_MESSAGE = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-test",
    "content": [{"type": "text", "text": "hello from upstream"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 3, "output_tokens": 4},
}


def anthropic_event(kind: str, data: dict[str, Any]) -> bytes:
    """Return one Anthropic server-sent event with its ``event:`` line."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


ANTHROPIC_STREAM = [
    anthropic_event(
        "message_start",
        {
            "type": "message_start",
            "message": {**ANTHROPIC_MESSAGE, "content": [], "stop_reason": None},
        },
    ),
    anthropic_event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
    ),
    anthropic_event("ping", {"type": "ping"}),
    anthropic_event(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "stre"},
        },
    ),
    anthropic_event(
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "amed"},
        },
    ),
    anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
    anthropic_event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2},
        },
    ),
    anthropic_event("message_stop", {"type": "message_stop"}),
]


def anthropic_handler(request: RecordedRequest, connection: Connection) -> Reply:
    """Reply to the Messages API, streamed when the request body asks for it."""
    if orjson.loads(request.body).get("stream"):
        return sse_reply(ANTHROPIC_STREAM)
    return json_reply(ANTHROPIC_MESSAGE)


@pytest.fixture
def anthropic_client(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> anthropic.Anthropic:
    """An Anthropic client whose base URL is Outpost's /p/anthropic."""
    upstream.handler = anthropic_handler
    auth = {
        "type": "api_key_header",
        "env": "OUTPOST_TEST_SECRET",
        "header": "x-api-key",
    }
    outpost = start_outpost(
        [sdk_provider("anthropic", upstream.url, auth)], env=SECRET_ENV
    )
    return anthropic.Anthropic(
        api_key=DUMMY_KEY, base_url=outpost.url + "/p/anthropic", max_retries=0
    )


def test_anthropic_message(
    anthropic_client: anthropic.Anthropic, upstream: RecordingUpstream
) -> None:
    message = anthropic_client.messages.create(
        model="claude-test",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == "hello from upstream"
    request = upstream.requests[0]
    assert request.path == "/v1/messages"
    assert request.header("x-api-key") == TEST_SECRET
    assert request.header("anthropic-version") is not None
    assert_only_secret_forwarded(upstream)


def test_anthropic_streamed_message(
    anthropic_client: anthropic.Anthropic, upstream: RecordingUpstream
) -> None:
    with anthropic_client.messages.stream(
        model="claude-test",
        max_tokens=16,
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "streamed"
    assert final.stop_reason == "end_turn"
    assert upstream.requests[0].header("x-api-key") == TEST_SECRET
    assert_only_secret_forwarded(upstream)


def slack_handler(request: RecordedRequest, connection: Connection) -> Reply:
    """Reply to the two Slack Web API methods the test calls."""
    if request.path == "/api/auth.test":
        return json_reply({"ok": True, "team": "T", "user": "bot", "user_id": "U1"})
    return json_reply({"ok": True, "channel": "C1", "ts": "1700000000.000100"})


def test_slack_web_client(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = slack_handler
    outpost = start_outpost(
        [sdk_provider("slack", upstream.url + "/api")], env=SECRET_ENV
    )
    client = WebClient(token=DUMMY_KEY, base_url=f"{outpost.url}/p/slack/")

    identity = client.auth_test()
    posted = client.chat_postMessage(channel="C1", text="hello")

    assert identity["user_id"] == "U1"
    assert posted["ts"] == "1700000000.000100"
    paths = [request.path for request in upstream.requests]
    assert paths == ["/api/auth.test", "/api/chat.postMessage"]
    for request in upstream.requests:
        assert request.header("authorization") == f"Bearer {TEST_SECRET}"
    assert b"hello" in upstream.requests[1].body
    assert_only_secret_forwarded(upstream)


def stripe_client(outpost: OutpostServer) -> stripe.StripeClient:
    """Return a Stripe client whose API base is Outpost's /p/stripe."""
    return stripe.StripeClient(
        DUMMY_KEY,
        base_addresses={"api": outpost.url + "/p/stripe"},
        max_network_retries=0,
    )


def test_stripe_customer_list(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: json_reply(
        {
            "object": "list",
            "url": "/v1/customers",
            "has_more": False,
            "data": [{"id": "cus_1", "object": "customer", "email": "a@b.test"}],
        }
    )
    outpost = start_outpost([sdk_provider("stripe", upstream.url)], env=SECRET_ENV)

    customers = stripe_client(outpost).v1.customers.list({"limit": 3})

    assert [customer.id for customer in customers.data] == ["cus_1"]
    request = upstream.requests[0]
    assert request.method == "GET"
    assert request.target == "/v1/customers?limit=3"
    assert request.header("authorization") == f"Bearer {TEST_SECRET}"
    assert_only_secret_forwarded(upstream)


def test_stripe_customer_create(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    upstream.handler = lambda request, connection: json_reply(
        {"id": "cus_2", "object": "customer", "email": "new@b.test"}
    )
    outpost = start_outpost([sdk_provider("stripe", upstream.url)], env=SECRET_ENV)

    customer = stripe_client(outpost).v1.customers.create({"email": "new@b.test"})

    assert customer.id == "cus_2"
    request = upstream.requests[0]
    assert request.method == "POST"
    assert request.path == "/v1/customers"
    assert request.body == b"email=new%40b.test"
    assert_only_secret_forwarded(upstream)
