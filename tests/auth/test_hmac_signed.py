"""``hmac_signed``: Binance's documented vectors and signatures checked upstream."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
from pydantic import ValidationError

from outpost.auth.base import AuthContext, resolve_auth_type
from outpost.auth.hmac_signed import HmacSignedAuth, wire_query
from outpost.http import OutgoingRequest
from tests.conftest import StartOutpost
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

# The example key pair and parameters of Binance's "SIGNED endpoint examples
# for POST /api/v3/order" (Binance Spot API documentation, HMAC SHA256).
BINANCE_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
BINANCE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
BINANCE_TIMESTAMP = 1499827319559
# Example 1: every parameter in the query string.
BINANCE_QUERY_SIGNATURE = (
    "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
)
# Example 3: part in the query, part in the body, signed as query + body.
BINANCE_MIXED_SIGNATURE = (
    "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
)
ENV = {"EXCHANGE_KEY": BINANCE_KEY, "EXCHANGE_SECRET": BINANCE_SECRET}


def binance_auth(**overrides: Any) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "hmac_signed",
        "key_env": "EXCHANGE_KEY",
        "secret_env": "EXCHANGE_SECRET",
        "key_header": "X-MBX-APIKEY",
        "signature_param": "signature",
        "timestamp_param": "timestamp",
    }
    auth.update(overrides)
    return auth


def build(auth: dict[str, Any], clock: int = BINANCE_TIMESTAMP) -> HmacSignedAuth:
    auth_class = resolve_auth_type("hmac_signed")
    assert auth_class is HmacSignedAuth
    module = HmacSignedAuth(auth_class.config_model.model_validate(auth), ENV)
    module.clock = lambda: clock
    return module


async def test_binance_query_example() -> None:
    auth = build(binance_auth())
    request = OutgoingRequest(
        "POST",
        "/api/v3/order",
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000",
    )

    await auth.apply(request, AuthContext("binance"))

    assert request.query == (
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
        "&recvWindow=5000&timestamp=1499827319559"
        f"&signature={BINANCE_QUERY_SIGNATURE}"
    )
    assert request.get_header("x-mbx-apikey") == BINANCE_KEY


async def test_binance_query_and_body_example() -> None:
    auth = build(
        binance_auth(
            timestamp_param=None, timestamp_header="X-Ts", payload="query+body"
        )
    )
    request = OutgoingRequest(
        "POST",
        "/api/v3/order",
        "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
        body=b"quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559",
    )

    await auth.apply(request, AuthContext("binance"))

    assert request.query.endswith(f"&signature={BINANCE_MIXED_SIGNATURE}")
    assert request.get_header("x-ts") == str(BINANCE_TIMESTAMP)


async def test_agent_signature_and_timestamp_replaced() -> None:
    auth = build(binance_auth())
    request = OutgoingRequest(
        "GET",
        "/api/v3/account",
        "signature=forged&timestamp=1&recvWindow=5000&signature=again",
    )

    await auth.apply(request, AuthContext("binance"))

    expected = hmac.new(
        BINANCE_SECRET.encode(),
        b"recvWindow=5000&timestamp=1499827319559",
        hashlib.sha256,
    ).hexdigest()
    assert request.query == (
        f"recvWindow=5000&timestamp=1499827319559&signature={expected}"
    )


async def test_body_payload_with_sha512_headers() -> None:
    auth = build(
        {
            "type": "hmac_signed",
            "secret_env": "EXCHANGE_SECRET",
            "signature_header": "X-Signature",
            "timestamp_header": "X-Timestamp",
            "digest": "sha512",
            "payload": "body",
        },
        clock=1700000000000,
    )
    request = OutgoingRequest("POST", "/orders", "a=1", body=b'{"qty":1}')

    await auth.apply(request, AuthContext("exchange"))

    expected = hmac.new(
        BINANCE_SECRET.encode(), b'{"qty":1}', hashlib.sha512
    ).hexdigest()
    assert auth.signs_body
    assert request.query == "a=1"
    assert request.get_header("x-signature") == expected
    assert request.get_header("x-timestamp") == "1700000000000"
    assert auth.injected_headers == {"x-signature", "x-timestamp"}


def test_wire_query_escapes_what_the_client_would() -> None:
    assert wire_query("a='x'&b=\"y\"&c=<>") == "a=%27x%27&b=%22y%22&c=%3C%3E"
    assert wire_query("e=a+b&f=%7e~!$()*,;:@/?") == "e=a+b&f=%7e~!$()*,;:@/?"
    assert wire_query("n=é") == "n=%C3%A9"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"signature_header": "X-Sig"}, "exactly one of 'signature_header'"),
        ({"timestamp_header": "X-Ts"}, "exactly one of 'timestamp_header'"),
        ({"key_header": None}, "'key_env' and 'key_header' together"),
        ({"digest": "md5"}, "sha256"),
    ],
)
def test_config_errors(overrides: dict[str, Any], message: str) -> None:
    auth_class = resolve_auth_type("hmac_signed")
    assert auth_class is not None
    data = {k: v for k, v in binance_auth(**overrides).items() if v is not None}
    with pytest.raises(ValidationError, match=message):
        auth_class.config_model.model_validate(data)


class VerifyingUpstream:
    """An exchange that re-computes the signature over the bytes it received."""

    def __init__(self, payload: str) -> None:
        self.payload = payload
        self.verdicts: list[bool] = []
        self.server = RecordingUpstream(self._handle)

    def _handle(self, request: RecordedRequest, connection: Connection) -> Reply:
        query, _, signature = request.query.rpartition("&signature=")
        signed = b""
        if self.payload in ("query", "query+body"):
            signed += query.encode()
        if self.payload in ("body", "query+body"):
            signed += request.body
        expected = hmac.new(BINANCE_SECRET.encode(), signed, hashlib.sha256)
        valid = hmac.compare_digest(expected.hexdigest(), signature)
        valid = valid and request.header("x-mbx-apikey") == BINANCE_KEY
        self.verdicts.append(valid)
        return Reply() if valid else Reply(status=401, body=b'{"code":-1022}')


@pytest.mark.parametrize("payload", ["query", "query+body"])
def test_upstream_verifies_signature_on_received_bytes(
    start_outpost: StartOutpost, payload: str
) -> None:
    upstream = VerifyingUpstream(payload)
    provider = {
        "name": "binance",
        "base_url": upstream.server.url,
        "auth": binance_auth(payload=payload),
        "forwarding": {"mode": "transparent", "treat_writes_as_sensitive": False},
    }
    outpost = start_outpost([provider], env=ENV)
    before = int(time.time() * 1000)

    got = outpost.get(
        "/p/binance/api/v3/account?recvWindow=5000&note='hi'&tag=a+b&tag=c"
        "&signature=dummy",
        [("X-MBX-APIKEY", "agent-dummy")],
    )
    posted = outpost.request(
        "POST",
        "/p/binance/api/v3/order?symbol=LTCBTC",
        [("Content-Type", "application/x-www-form-urlencoded")],
        b"side=BUY&quantity=1&price=0.1",
    )

    assert got.status == 200
    assert posted.status == 200
    assert upstream.verdicts == [True, True]
    first = upstream.server.requests[0]
    assert first.query.startswith("recvWindow=5000&note=%27hi%27&tag=a+b&tag=c&")
    stamp = int(first.query.split("timestamp=")[1].split("&")[0])
    assert before <= stamp <= int(time.time() * 1000)
    assert upstream.server.requests[1].body == b"side=BUY&quantity=1&price=0.1"
    assert BINANCE_SECRET not in outpost.output()
    upstream.server.close()
