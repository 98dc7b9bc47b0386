"""OAuth 2.0 client credentials and refresh token grants against a real endpoint."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from outpost.auth.base import (
    AuthContext,
    CredentialError,
    MissingCredentialError,
    resolve_auth_type,
)
from outpost.auth.oauth2 import ClientCredentialsAuth, RefreshTokenAuth
from outpost.cli.main import main
from outpost.http import OutgoingRequest
from outpost.store.memory import MemoryStore
from outpost.store.sqlite import SqliteStore
from tests.conftest import StartOutpost
from tests.support.outpost import OutpostServer, free_port
from tests.support.rawhttp import RawResponse
from tests.support.tokens import TokenEndpoint
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply
from tests.support.valkey import start_valkey

CLIENT_ID = "outpost-client"
CLIENT_SECRET = "cs_TEST_SECRET_7d1e"
ENV = {"CRM_CLIENT_ID": CLIENT_ID, "CRM_CLIENT_SECRET": CLIENT_SECRET}


@pytest.fixture
def tokens() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(CLIENT_ID, CLIENT_SECRET)
    yield endpoint
    endpoint.close()


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    opened = MemoryStore()
    yield opened
    await opened.close()


def client_credentials(tokens: TokenEndpoint, **overrides: Any) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "oauth2_client_credentials",
        "client_id_env": "CRM_CLIENT_ID",
        "client_secret_env": "CRM_CLIENT_SECRET",
        "token_url": tokens.url,
        "scope": "contacts.read",
    }
    auth.update(overrides)
    return auth


def build(auth: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    auth_class = resolve_auth_type(auth["type"])
    assert auth_class is not None
    return auth_class(auth_class.config_model.model_validate(auth), env or ENV)


def new_request() -> OutgoingRequest:
    return OutgoingRequest(method="GET", path="/v1/contacts", query="")


# In-process: the module against the real token endpoint and a memory store.


async def test_body_client_auth_sends_form_fields(
    tokens: TokenEndpoint, store: MemoryStore
) -> None:
    auth = build(client_credentials(tokens, audience="https://api.example"))
    request = new_request()

    applied = await auth.apply(request, AuthContext("crm", store))

    assert request.get_header("authorization") == "Bearer atok1-Q7ZX"
    assert tokens.grants == [
        {
            "grant_type": "client_credentials",
            "scope": "contacts.read",
            "audience": "https://api.example",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
    ]
    sent = tokens.server.requests[0]
    assert sent.header("content-type") == "application/x-www-form-urlencoded"
    assert sent.header("authorization") is None
    assert applied.value == b"atok1-Q7ZX"
    assert applied.store_key.startswith("token:oauth2_client_credentials:crm:")
    await auth.close()


async def test_basic_client_auth_uses_header(
    tokens: TokenEndpoint, store: MemoryStore
) -> None:
    tokens.client_secret = "s3cr:t/+"
    auth = build(
        client_credentials(tokens, client_auth="basic", scope=["a", "b"]),
        {"CRM_CLIENT_ID": CLIENT_ID, "CRM_CLIENT_SECRET": "s3cr:t/+"},
    )
    request = new_request()

    await auth.apply(request, AuthContext("crm", store))

    assert request.get_header("authorization") == "Bearer atok1-Q7ZX"
    assert tokens.grants[0] == {"grant_type": "client_credentials", "scope": "a b"}
    sent = tokens.server.requests[0].header("authorization")
    assert sent is not None
    assert sent.startswith("Basic ")
    await auth.close()


async def test_cached_token_is_reused(
    tokens: TokenEndpoint, store: MemoryStore
) -> None:
    auth = build(client_credentials(tokens))

    for _ in range(5):
        await auth.apply(new_request(), AuthContext("crm", store))

    assert tokens.calls == 1
    await auth.close()


async def test_providers_never_share_a_token(
    tokens: TokenEndpoint, store: MemoryStore
) -> None:
    auth = build(client_credentials(tokens))
    other_scope = build(client_credentials(tokens, scope="contacts.write"))
    first, second, third = new_request(), new_request(), new_request()

    await auth.apply(first, AuthContext("crm", store))
    await auth.apply(second, AuthContext("crm-eu", store))
    await other_scope.apply(third, AuthContext("crm", store))

    values = {r.get_header("authorization") for r in (first, second, third)}
    assert values == {"Bearer atok1-Q7ZX", "Bearer atok2-Q7ZX", "Bearer atok3-Q7ZX"}
    await auth.close()
    await other_scope.close()


async def test_rejected_client_names_error_code_only(
    tokens: TokenEndpoint, store: MemoryStore
) -> None:
    auth = build(
        client_credentials(tokens),
        {"CRM_CLIENT_ID": CLIENT_ID, "CRM_CLIENT_SECRET": "wrong-secret-value"},
    )

    with pytest.raises(CredentialError) as caught:
        await auth.apply(new_request(), AuthContext("crm", store))

    message = str(caught.value)
    assert "returned status 401 with error 'invalid_client'" in message
    assert "wrong-secret-value" not in message
    await auth.close()


async def test_unreachable_endpoint_is_credential_error(store: MemoryStore) -> None:
    auth = build(
        {
            "type": "oauth2_client_credentials",
            "client_id_env": "CRM_CLIENT_ID",
            "client_secret_env": "CRM_CLIENT_SECRET",
            "token_url": f"http://127.0.0.1:{free_port()}/oauth/token",
        }
    )

    with pytest.raises(CredentialError, match="unreachable"):
        await auth.apply(new_request(), AuthContext("crm", store))
    await auth.close()


async def test_invalidate_deletes_only_the_used_token(
    tokens: TokenEndpoint, store: MemoryStore
) -> None:
    auth = build(client_credentials(tokens))
    context = AuthContext("crm", store)
    first = await auth.apply(new_request(), context)
    await auth.invalidate(first, context)
    second = await auth.apply(new_request(), context)

    await auth.invalidate(first, context)

    assert second is not None
    assert second.value == b"atok2-Q7ZX"
    assert await store.get(second.store_key) == b"atok2-Q7ZX"
    await auth.close()


def test_config_rejects_token_url_with_credentials() -> None:
    auth_class = resolve_auth_type("oauth2_client_credentials")
    assert auth_class is ClientCredentialsAuth
    with pytest.raises(ValidationError, match="must not carry a user name"):
        auth_class.config_model.model_validate(
            client_credentials_raw("https://user:pw@auth.example/token")
        )
    with pytest.raises(ValidationError, match="http:// or https://"):
        auth_class.config_model.model_validate(client_credentials_raw("ftp://x/t"))


def client_credentials_raw(token_url: str) -> dict[str, Any]:
    return {
        "type": "oauth2_client_credentials",
        "client_id_env": "A",
        "client_secret_env": "B",
        "token_url": token_url,
    }


async def test_refresh_token_seed_then_rotation(store: MemoryStore) -> None:
    tokens = TokenEndpoint(
        CLIENT_ID, CLIENT_SECRET, rotate_refresh_tokens=True, refresh_tokens=("rt-0",)
    )
    auth = build(
        {
            "type": "oauth2_refresh_token",
            "client_id_env": "CRM_CLIENT_ID",
            "client_secret_env": "CRM_CLIENT_SECRET",
            "token_url": tokens.url,
            "refresh_token_env_seed": "CRM_REFRESH_TOKEN",
        },
        {**ENV, "CRM_REFRESH_TOKEN": "rt-0"},
    )
    assert isinstance(auth, RefreshTokenAuth)
    context = AuthContext("crm", store)

    first = await auth.apply(new_request(), context)
    assert await store.get("oauth2:crm:refresh_token") == b"rtok1-R4WV"
    await auth.invalidate(first, context)
    second = await auth.apply(new_request(), context)

    assert [grant["refresh_token"] for grant in tokens.grants] == ["rt-0", "rtok1-R4WV"]
    assert second is not None
    assert second.value == b"atok2-Q7ZX"
    assert await store.get("oauth2:crm:refresh_token") == b"rtok2-R4WV"
    await auth.close()
    tokens.close()


async def test_refresh_token_missing_everywhere(
    tokens: TokenEndpoint, store: MemoryStore
) -> None:
    auth = build(
        {
            "type": "oauth2_refresh_token",
            "client_id_env": "CRM_CLIENT_ID",
            "token_url": tokens.url,
            "refresh_token_env_seed": "CRM_REFRESH_TOKEN",
        }
    )

    with pytest.raises(CredentialError, match="no refresh token for provider 'crm'"):
        await auth.apply(new_request(), AuthContext("crm", store))
    assert tokens.calls == 0
    await auth.close()


# End to end: Outpost processes, a token endpoint and an upstream on loopback.


class BearerUpstream:
    """An upstream that accepts only tokens the endpoint issued and records them."""

    def __init__(self, tokens: TokenEndpoint) -> None:
        self.tokens = tokens
        self.reject_next = 0
        self.seen: list[str] = []
        self.server = RecordingUpstream(self._handle)

    def _handle(self, request: RecordedRequest, connection: Connection) -> Reply:
        header = request.header("authorization") or ""
        token = header.removeprefix("Bearer ")
        self.seen.append(token)
        if self.reject_next > 0 or token not in self.tokens.issued:
            self.reject_next -= 1
            return Reply(
                status=401,
                headers=[
                    ("Content-Type", "application/json"),
                    ("WWW-Authenticate", 'Bearer error="invalid_token"'),
                ],
                body=b'{"error":"invalid_token"}',
            )
        return Reply()


@pytest.fixture
def api(tokens: TokenEndpoint) -> Iterator[BearerUpstream]:
    upstream = BearerUpstream(tokens)
    yield upstream
    upstream.server.close()


def provider(api: BearerUpstream, auth: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "crm",
        "base_url": api.server.url,
        "auth": auth,
        "forwarding": {
            "mode": "transparent",
            "rate_limits": {"default": [{"capacity": 10000, "window_ms": 1000}]},
        },
    }


def send_concurrently(outpost: OutpostServer, count: int) -> list[RawResponse]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [
            pool.submit(outpost.get, f"/p/crm/v1/contacts?n={n}") for n in range(count)
        ]
        return [future.result() for future in futures]


def error_code(response: RawResponse) -> object:
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error["code"]


def assert_no_secret_in_output(outpost: OutpostServer, tokens: TokenEndpoint) -> None:
    output = outpost.output()
    assert CLIENT_SECRET not in output
    assert "client_secret" not in output
    assert "grant_type" not in output
    for token in tokens.issued:
        assert token not in output


def test_concurrent_first_requests_mint_once_across_workers(
    start_outpost: StartOutpost, tokens: TokenEndpoint, api: BearerUpstream
) -> None:
    tokens.delay = 0.3
    outpost = start_outpost(
        [provider(api, client_credentials(tokens))], env=ENV, workers=2
    )

    responses = send_concurrently(outpost, 100)

    assert [r.status for r in responses] == [200] * 100
    assert tokens.calls == 1
    assert set(api.seen) == {"atok1-Q7ZX"}
    assert_no_secret_in_output(outpost, tokens)


def test_token_minted_again_after_expiry(
    start_outpost: StartOutpost, tokens: TokenEndpoint, api: BearerUpstream
) -> None:
    tokens.expires_in = 2
    outpost = start_outpost([provider(api, client_credentials(tokens))], env=ENV)

    assert outpost.get("/p/crm/v1/contacts").status == 200
    assert outpost.get("/p/crm/v1/contacts").status == 200
    assert tokens.calls == 1
    time.sleep(2.0)
    assert outpost.get("/p/crm/v1/contacts").status == 200

    assert tokens.calls == 2
    assert api.seen == ["atok1-Q7ZX", "atok1-Q7ZX", "atok2-Q7ZX"]


def test_failed_mint_answers_502_without_stampede(
    start_outpost: StartOutpost, tokens: TokenEndpoint, api: BearerUpstream
) -> None:
    tokens.delay = 0.3
    tokens.fail_next = 1
    outpost = start_outpost([provider(api, client_credentials(tokens))], env=ENV)

    started = time.monotonic()
    responses = send_concurrently(outpost, 50)
    elapsed = time.monotonic() - started

    assert [r.status for r in responses] == [502] * 50
    assert {error_code(r) for r in responses} == {"PROXY_AUTH_ERROR"}
    assert tokens.calls == 1
    assert elapsed < 3.0
    assert api.server.count == 0

    time.sleep(2.1)
    assert outpost.get("/p/crm/v1/contacts").status == 200
    assert tokens.calls == 2
    assert_no_secret_in_output(outpost, tokens)


def test_rejected_token_refreshed_once_without_retry(
    start_outpost: StartOutpost, tokens: TokenEndpoint, api: BearerUpstream
) -> None:
    api.reject_next = 1
    outpost = start_outpost([provider(api, client_credentials(tokens))], env=ENV)

    rejected = outpost.get("/p/crm/v1/contacts")
    assert rejected.status == 401
    assert rejected.header("www-authenticate") == 'Bearer error="invalid_token"'
    assert api.server.count == 1
    assert tokens.calls == 1

    assert outpost.get("/p/crm/v1/contacts").status == 200
    assert outpost.get("/p/crm/v1/contacts").status == 200
    assert tokens.calls == 2
    assert api.seen == ["atok1-Q7ZX", "atok2-Q7ZX", "atok2-Q7ZX"]


def test_always_rejected_token_never_loops(
    start_outpost: StartOutpost, tokens: TokenEndpoint, api: BearerUpstream
) -> None:
    api.reject_next = 1000
    outpost = start_outpost([provider(api, client_credentials(tokens))], env=ENV)

    statuses = [outpost.get("/p/crm/v1/contacts").status for _ in range(3)]

    assert statuses == [401, 401, 401]
    assert api.server.count == 3
    assert tokens.calls == 3


def test_refresh_token_rotates_end_to_end(
    start_outpost: StartOutpost, api: BearerUpstream, tokens: TokenEndpoint
) -> None:
    tokens.rotate_refresh_tokens = True
    tokens.valid_refresh_tokens = {"rt-seed-9f2c"}
    tokens.expires_in = 1
    auth = {
        "type": "oauth2_refresh_token",
        "client_id_env": "CRM_CLIENT_ID",
        "client_secret_env": "CRM_CLIENT_SECRET",
        "token_url": tokens.url,
        "refresh_token_env_seed": "CRM_REFRESH_TOKEN",
        "client_auth": "basic",
    }
    env = {**ENV, "CRM_REFRESH_TOKEN": "rt-seed-9f2c"}
    outpost = start_outpost([provider(api, auth)], env=env, workers=2)

    assert outpost.get("/p/crm/v1/contacts").status == 200
    time.sleep(1.0)
    assert outpost.get("/p/crm/v1/contacts").status == 200

    presented = [grant["refresh_token"] for grant in tokens.grants]
    assert presented == ["rt-seed-9f2c", "rtok1-R4WV"]
    assert api.seen == ["atok1-Q7ZX", "atok2-Q7ZX"]
    output = outpost.output()
    assert "rt-seed-9f2c" not in output
    assert "rtok1-R4WV" not in output
    assert_no_secret_in_output(outpost, tokens)


def test_token_command_sets_refresh_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    providers = tmp_path / "providers"
    providers.mkdir()
    auth = {
        "type": "oauth2_refresh_token",
        "client_id_env": "CRM_CLIENT_ID",
        "token_url": "http://127.0.0.1:9/oauth/token",
    }
    provider = {"name": "crm", "base_url": "http://127.0.0.1:9", "auth": auth}
    (providers / "crm.yaml").write_text(yaml.safe_dump(provider))
    state = tmp_path / "state.db"
    monkeypatch.setenv("CRM_CLIENT_ID", CLIENT_ID)
    monkeypatch.setattr("sys.stdin", io.StringIO("rt-operator-set\n"))

    store_url = f"sqlite:///{state}"
    command = ["token", "set", "--provider", "crm", "--providers", str(providers)]
    code = main([*command, "--store", store_url])

    async def read() -> bytes | None:
        async with SqliteStore(str(state)) as store:
            return await store.get("oauth2:crm:refresh_token")

    assert code == 0
    assert asyncio.run(read()) == b"rt-operator-set"


async def test_revoked_refresh_token_names_the_fix(
    tokens: TokenEndpoint, store: MemoryStore
) -> None:
    tokens.valid_refresh_tokens = {"rt-current"}
    auth = build(
        {
            "type": "oauth2_refresh_token",
            "client_id_env": "CRM_CLIENT_ID",
            "client_secret_env": "CRM_CLIENT_SECRET",
            "token_url": tokens.url,
            "refresh_token_env_seed": "CRM_REFRESH_TOKEN",
        },
        {**ENV, "CRM_REFRESH_TOKEN": "rt-revoked"},
    )

    with pytest.raises(CredentialError) as caught:
        await auth.apply(new_request(), AuthContext("crm", store))

    message = str(caught.value)
    assert "returned status 400 with error 'invalid_grant'" in message
    assert "outpost token set --provider crm" in message
    assert "rt-revoked" not in message
    await auth.close()


def test_missing_variables_reported_together(tokens: TokenEndpoint) -> None:
    with pytest.raises(MissingCredentialError) as caught:
        build(client_credentials(tokens), {"UNRELATED": "x"})

    assert caught.value.variables == ["CRM_CLIENT_ID", "CRM_CLIENT_SECRET"]


def test_two_replicas_on_redis_mint_once(
    start_outpost: StartOutpost,
    tokens: TokenEndpoint,
    api: BearerUpstream,
    tmp_path: Path,
) -> None:
    valkey = start_valkey(tmp_path / "valkey")
    tokens.delay = 0.3
    try:
        replicas = [
            start_outpost(
                [provider(api, client_credentials(tokens))],
                env=ENV,
                workers=2,
                args=["--store", valkey.url],
            )
            for _ in range(2)
        ]
        with ThreadPoolExecutor(max_workers=60) as pool:
            futures = [
                pool.submit(replicas[n % 2].get, f"/p/crm/v1/contacts?n={n}")
                for n in range(60)
            ]
            statuses = [future.result().status for future in futures]
    finally:
        valkey.stop()

    assert statuses == [200] * 60
    assert tokens.calls == 1
    assert set(api.seen) == {"atok1-Q7ZX"}
