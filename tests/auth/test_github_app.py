"""``github_app``: app JWTs checked with the public key, installation tokens cached."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from outpost.auth.base import AuthContext, resolve_auth_type
from outpost.auth.github_app import GitHubAppAuth
from outpost.http import OutgoingRequest
from outpost.store.memory import MemoryStore
from tests.conftest import StartOutpost
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

APP_ID = "123456"
INSTALLATION_ID = "42"
TOKEN_PATH = f"/app/installations/{INSTALLATION_ID}/access_tokens"


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class FakeGitHub:
    """GitHub's installation token endpoint: checks the app JWT, issues tokens."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.public_key = key.public_key()
        self.claims: list[dict[str, Any]] = []
        self.issued: list[str] = []
        self.server = RecordingUpstream(self._handle)

    @property
    def token_url(self) -> str:
        return self.server.url + TOKEN_PATH

    def _handle(self, request: RecordedRequest, connection: Connection) -> Reply:
        header = request.header("authorization") or ""
        try:
            claims = jwt.decode(
                header.removeprefix("Bearer "),
                self.public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError:
            return Reply(
                status=401, body=b'{"message":"A JSON web token could not be decoded"}'
            )
        self.claims.append(claims)
        if request.method != "POST" or request.path != TOKEN_PATH:
            return Reply(status=404, body=b'{"message":"Not Found"}')
        if claims["iss"] != APP_ID or claims["exp"] - claims["iat"] > 600:
            return Reply(status=401, body=b'{"message":"bad claims"}')
        token = f"ghs_installation{len(self.issued) + 1}xyz"
        self.issued.append(token)
        expires = datetime.now(UTC) + timedelta(hours=1)
        body = {"token": token, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return Reply(status=201, body=orjson.dumps(body))


@pytest.fixture
def github(private_key: rsa.RSAPrivateKey) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(private_key)
    yield fake
    fake.server.close()


def app_auth(**overrides: Any) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "github_app",
        "app_id": int(APP_ID),
        "installation_id": INSTALLATION_ID,
        "private_key_env": "GH_APP_KEY",
    }
    auth.update(overrides)
    return {key: value for key, value in auth.items() if value is not None}


def build(auth: dict[str, Any], env: dict[str, str]) -> GitHubAppAuth:
    auth_class = resolve_auth_type("github_app")
    assert auth_class is GitHubAppAuth
    return GitHubAppAuth(auth_class.config_model.model_validate(auth), env)


async def test_installation_token_minted_and_cached(
    github: FakeGitHub, private_key: rsa.RSAPrivateKey
) -> None:
    auth = build(app_auth(token_url=github.token_url), {"GH_APP_KEY": pem(private_key)})
    store = MemoryStore()

    first = OutgoingRequest("GET", "/repos/acme/app", "")
    second = OutgoingRequest("GET", "/repos/acme/app", "")
    await auth.apply(first, AuthContext("github", store))
    await auth.apply(second, AuthContext("github", store))

    assert first.get_header("authorization") == "Bearer ghs_installation1xyz"
    assert second.get_header("authorization") == "Bearer ghs_installation1xyz"
    assert github.server.count == 1
    claims = github.claims[0]
    assert claims["iss"] == APP_ID
    assert claims["iat"] <= time.time() - 59
    sent = github.server.requests[0]
    assert sent.header("accept") == "application/vnd.github+json"
    await auth.close()
    await store.close()


def test_token_url_defaults_to_api(
    private_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem(private_key))

    auth = build(
        app_auth(
            private_key_env=None,
            private_key_file=str(key_file),
            api_url="https://github.example.com/api/v3/",
        ),
        {},
    )

    assert auth.token_url == (
        "https://github.example.com/api/v3/app/installations/42/access_tokens"
    )


def test_bad_private_key_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an unencrypted PEM key"):
        build(app_auth(), {"GH_APP_KEY": "-----BEGIN RSA PRIVATE KEY-----\nnope"})
    with pytest.raises(ValueError, match="cannot read the GitHub App private key"):
        build(
            app_auth(private_key_env=None, private_key_file=str(tmp_path / "no.pem")),
            {},
        )


def test_github_app_end_to_end(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    github: FakeGitHub,
    private_key: rsa.RSAPrivateKey,
) -> None:
    provider = {
        "name": "github",
        "base_url": upstream.url,
        "auth": app_auth(token_url=github.token_url),
    }
    key = pem(private_key)
    outpost = start_outpost([provider], env={"GH_APP_KEY": key}, workers=2)

    responses = [outpost.get("/p/github/repos/acme/app") for _ in range(3)]

    assert [r.status for r in responses] == [200, 200, 200]
    assert github.server.count == 1
    assert {r.header("authorization") for r in upstream.requests} == {
        "Bearer ghs_installation1xyz"
    }
    output = outpost.output()
    assert "ghs_installation1xyz" not in output
    assert "PRIVATE KEY" not in output
