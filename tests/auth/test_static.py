"""Fixed-credential auth modules, applied to an outgoing request."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from outpost.auth.base import (
    AuthContext,
    AuthModule,
    MissingCredentialError,
    resolve_auth_type,
)
from outpost.http import OutgoingRequest

CONTEXT = AuthContext(provider="test")


def build(block: dict[str, Any], env: dict[str, str]) -> AuthModule:
    module_class = resolve_auth_type(block["type"])
    assert module_class is not None
    config = module_class.config_model.model_validate(block)
    return module_class(config, env)


def request(
    query: str = "", headers: list[tuple[str, str]] | None = None
) -> OutgoingRequest:
    return OutgoingRequest(method="GET", path="/x", query=query, headers=headers or [])


async def test_bearer_static_from_env() -> None:
    auth = build({"type": "bearer_static", "env": "TOKEN"}, {"TOKEN": "t-1"})
    outgoing = request(headers=[("authorization", "Bearer dummy")])

    await auth.apply(outgoing, CONTEXT)

    assert outgoing.headers == [("authorization", "Bearer t-1")]
    assert auth.injected_headers == frozenset({"authorization"})


async def test_bearer_static_literal_and_custom_header() -> None:
    block = {"type": "bearer_static", "value": "v-1", "header": "X-Token", "prefix": ""}
    auth = build(block, {})
    outgoing = request()

    await auth.apply(outgoing, CONTEXT)

    assert outgoing.get_header("x-token") == "v-1"


def test_bearer_static_needs_exactly_one_source() -> None:
    module_class = resolve_auth_type("bearer_static")
    assert module_class is not None

    with pytest.raises(ValueError, match="exactly one"):
        module_class.config_model.model_validate({"type": "bearer_static"})


async def test_api_key_header_with_prefix() -> None:
    block = {
        "type": "api_key_header",
        "env": "K",
        "header": "X-Api-Key",
        "prefix": "Key ",
    }
    auth = build(block, {"K": "k-1"})
    outgoing = request()

    await auth.apply(outgoing, CONTEXT)

    assert outgoing.get_header("x-api-key") == "Key k-1"


async def test_api_key_query_replaces_agent_value() -> None:
    auth = build({"type": "api_key_query", "env": "K", "param": "key"}, {"K": "k/1"})
    outgoing = request(query="a=1&key=agent&b=x+y&key=again&flag")

    await auth.apply(outgoing, CONTEXT)

    assert outgoing.query == "a=1&key=k%2F1&b=x+y&flag"


async def test_api_key_query_appends_when_absent() -> None:
    auth = build({"type": "api_key_query", "env": "K", "param": "key"}, {"K": "k1"})
    outgoing = request()

    await auth.apply(outgoing, CONTEXT)

    assert outgoing.target == "/x?key=k1"


async def test_basic_auth_with_older_key_names() -> None:
    block = {"type": "basic_auth", "user_env": "U", "pass_env": "P"}
    auth = build(block, {"U": "user", "P": "pa:ss"})
    outgoing = request()

    await auth.apply(outgoing, CONTEXT)

    expected = base64.b64encode(b"user:pa:ss").decode()
    assert outgoing.get_header("authorization") == f"Basic {expected}"
    assert "pa:ss" not in repr(vars(auth))


async def test_custom_headers_mix_env_and_literal() -> None:
    block = {
        "type": "custom_headers",
        "headers": {"X-Key": {"env": "K"}, "X-Team": {"value": "core"}},
    }
    auth = build(block, {"K": "k-1"})
    outgoing = request(headers=[("x-key", "agent")])

    await auth.apply(outgoing, CONTEXT)

    assert outgoing.headers == [("x-key", "k-1"), ("x-team", "core")]


def test_missing_variables_reported_together() -> None:
    with pytest.raises(MissingCredentialError) as caught:
        build({"type": "basic_auth", "username_env": "U", "password_env": "P"}, {})

    assert caught.value.variables == ["U", "P"]


async def test_none_injects_nothing() -> None:
    auth = build({"type": "none"}, {})
    outgoing = request(headers=[("accept", "*/*")])

    await auth.apply(outgoing, CONTEXT)

    assert outgoing.headers == [("accept", "*/*")]
