"""``bearer_store``: token from the store, seeding, rotation and invalidation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from outpost.auth.base import AuthContext, CredentialError, resolve_auth_type
from outpost.auth.bearer_store import (
    BearerStoreAuth,
    BearerStoreConfig,
    find_json_value,
    parse_json_path,
)
from outpost.http import OutgoingRequest
from outpost.store.memory import MemoryStore

SEED = "seed-token-0123456789"


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    opened = MemoryStore()
    yield opened
    await opened.close()


def build(env: dict[str, str] | None = None, **config: Any) -> BearerStoreAuth:
    data = {"type": "bearer_store", **config}
    auth_class = resolve_auth_type(data["type"])
    assert auth_class is BearerStoreAuth
    model = auth_class.config_model.model_validate(data)
    return BearerStoreAuth(model, env or {})


def request() -> OutgoingRequest:
    return OutgoingRequest(method="GET", path="/x", query="")


def context(store: MemoryStore, provider: str = "slack") -> AuthContext:
    return AuthContext(provider=provider, store=store)


async def test_token_is_read_from_store_per_request(store: MemoryStore) -> None:
    auth = build(key="slack_token")
    await store.set("slack_token", b"xoxb-1")

    first = request()
    applied = await auth.apply(first, context(store))
    await store.set("slack_token", b"xoxb-2")
    second = request()
    await auth.apply(second, context(store))

    assert first.get_header("authorization") == "Bearer xoxb-1"
    assert second.get_header("authorization") == "Bearer xoxb-2"
    assert applied is not None
    assert (applied.store_key, applied.value) == ("slack_token", b"xoxb-1")


def test_legacy_type_and_key_names_load() -> None:
    auth_class = resolve_auth_type("bearer_redis")
    assert auth_class is BearerStoreAuth
    config = BearerStoreConfig.model_validate(
        {"type": "bearer_store", "redis_key": "legacy"}
    )
    assert config.store_key("p") == "legacy"
    assert BearerStoreConfig(type="bearer_store").store_key("p") == "token:p"


async def test_header_and_prefix_are_configurable(store: MemoryStore) -> None:
    auth = build(header="X-Api-Token", prefix="")
    await store.set("token:slack", b"abc")
    outgoing = request()

    await auth.apply(outgoing, context(store))

    assert outgoing.get_header("x-api-token") == "abc"
    assert auth.injected_headers == frozenset({"x-api-token"})


async def test_missing_token_names_the_fix(store: MemoryStore) -> None:
    auth = build(env_seed="SLACK_SEED")

    with pytest.raises(CredentialError) as caught:
        await auth.apply(request(), context(store))

    message = str(caught.value)
    assert "outpost token set --provider slack" in message
    assert "SLACK_SEED" in message


async def test_seed_is_written_only_if_absent(store: MemoryStore) -> None:
    auth = build(env={"SLACK_SEED": SEED}, env_seed="SLACK_SEED")
    outgoing = request()

    await auth.apply(outgoing, context(store))
    assert await store.get("token:slack") == SEED.encode()
    assert outgoing.get_header("authorization") == f"Bearer {SEED}"

    await store.set("token:slack", b"rotated")
    rotated = request()
    await auth.apply(rotated, context(store))
    assert rotated.get_header("authorization") == "Bearer rotated"


async def test_operator_token_beats_seed(store: MemoryStore) -> None:
    await store.set("token:slack", b"operator")
    auth = build(env={"SLACK_SEED": SEED}, env_seed="SLACK_SEED")
    outgoing = request()

    await auth.apply(outgoing, context(store))

    assert outgoing.get_header("authorization") == "Bearer operator"
    assert await store.get("token:slack") == b"operator"


async def test_rejected_seed_is_not_written_again(store: MemoryStore) -> None:
    auth = build(env={"SLACK_SEED": SEED}, env_seed="SLACK_SEED")
    applied = await auth.apply(request(), context(store))

    assert await auth.is_rejected(401, None, applied)
    await auth.invalidate(applied, context(store))

    assert await store.get("token:slack") is None
    with pytest.raises(CredentialError, match="already used"):
        await auth.apply(request(), context(store))


async def test_late_rejection_keeps_rotated_token(store: MemoryStore) -> None:
    auth = build()
    await store.set("token:slack", b"old")
    old = await auth.apply(request(), context(store))
    await store.set("token:slack", b"new")

    await auth.invalidate(old, context(store))

    assert await store.get("token:slack") == b"new"


async def test_rejection_deletes_the_sent_token(store: MemoryStore) -> None:
    auth = build(invalidate_on=[401, 403])
    await store.set("token:slack", b"bad")
    applied = await auth.apply(request(), context(store))

    assert await auth.is_rejected(403, None, applied)
    assert not await auth.is_rejected(500, None, applied)
    await auth.invalidate(applied, context(store))

    assert await store.get("token:slack") is None


@pytest.mark.parametrize(
    ("body", "rejected"),
    [
        (b'{"ok":false,"error":{"code":"invalid_auth"}}', True),
        (b'{"error":{"code":40101}}', True),
        (b'{"error":{"code":"ratelimited"}}', False),
        (b'{"error":{"code":true}}', False),
        (b'{"error":"invalid_auth"}', False),
        (b"not json", False),
        (b"", False),
    ],
)
async def test_body_codes_decide_rejection(body: bytes, rejected: bool) -> None:
    auth = build(
        invalidate_on_body_codes={
            "json_path": "$.error.code",
            "codes": ["invalid_auth", 40101],
        }
    )

    assert auth.wants_response_body(200)
    assert not auth.wants_response_body(401)
    assert await auth.is_rejected(200, body, None) is rejected


def test_no_body_wanted_without_body_codes() -> None:
    assert not build().wants_response_body(200)


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$.error", ("error",)),
        ("$.error.code", ("error", "code")),
        ("$.errors[0].code", ("errors", 0, "code")),
    ],
)
def test_json_path_steps(path: str, steps: tuple[str | int, ...]) -> None:
    assert parse_json_path(path) == steps


@pytest.mark.parametrize("path", ["error.code", "$", "$.a..b", "$.a[x]", "$a"])
def test_invalid_json_path_is_rejected(path: str) -> None:
    with pytest.raises(ValidationError, match="json_path"):
        build(invalidate_on_body_codes={"json_path": path, "codes": ["x"]})


def test_json_value_lookup_tolerates_other_shapes() -> None:
    document = {"errors": [{"code": "a"}], "error": "flat"}

    assert find_json_value(document, ("errors", 0, "code")) == "a"
    assert find_json_value(document, ("errors", 5, "code")) is None
    assert find_json_value(document, ("error", "code")) is None


@pytest.mark.parametrize("value", [b"two words", b"line\nbreak", "tök".encode()])
async def test_unsafe_stored_token_is_not_sent(
    store: MemoryStore, value: bytes
) -> None:
    auth = build()
    await store.set("token:slack", value)

    with pytest.raises(CredentialError) as caught:
        await auth.apply(request(), context(store))

    assert value.decode(errors="replace") not in str(caught.value)


def test_seed_is_masked_in_repr() -> None:
    auth = build(env={"SLACK_SEED": SEED}, env_seed="SLACK_SEED")

    assert SEED not in repr(auth.seed)
    assert SEED not in repr(vars(auth))
