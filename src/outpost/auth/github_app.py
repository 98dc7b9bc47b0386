"""``github_app``: GitHub App installation tokens.

The module signs a short RS256 JSON Web Token with the app's private key.
Its ``iss`` is the app id, ``iat`` is backdated 60 s against clock drift,
and ``exp`` is 9 minutes after ``iat``, inside GitHub's 10-minute limit.
The JWT goes to ``POST {api}/app/installations/{installation_id}/
access_tokens``, and the installation token that comes back is cached in
the store until shortly before its ``expires_at`` (one hour after minting
on github.com). Requests carry ``Authorization: Bearer <installation
token>``.

The private key is parsed at startup, so a malformed key stops startup
instead of failing the first request. It never appears in a message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal, Self

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import field_validator, model_validator

from outpost.auth.base import (
    AuthConfig,
    AuthContext,
    CredentialError,
    read_secret,
    register,
)
from outpost.auth.minting import MintedToken, MintingAuth
from outpost.auth.oauth2 import check_token_url

DEFAULT_API = "https://api.github.com"
JWT_BACKDATE = 60
JWT_LIFETIME = 540


class GitHubAppConfig(AuthConfig):
    """``github_app``: app id, installation id and the app's private key."""

    type: Literal["github_app"]
    app_id: int | str
    installation_id: int | str
    private_key_env: str | None = None
    private_key_file: Path | None = None
    api_url: str = DEFAULT_API
    token_url: str | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Self:
        if (self.private_key_env is None) == (self.private_key_file is None):
            raise ValueError(
                "give exactly one of 'private_key_env' or 'private_key_file'"
            )
        return self

    @field_validator("api_url", "token_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else check_token_url(value)


def load_private_key(config: GitHubAppConfig, env: Mapping[str, str]) -> RSAPrivateKey:
    """Load and parse the app's PEM private key, or raise ValueError."""
    if config.private_key_env is not None:
        pem = read_secret(env, config.private_key_env).reveal().encode()
        source = f"variable {config.private_key_env}"
    else:
        assert config.private_key_file is not None
        source = f"file {str(config.private_key_file)!r}"
        try:
            pem = config.private_key_file.read_bytes()
        except OSError as exc:
            raise ValueError(
                f"cannot read the GitHub App private key {source}: {exc.strerror}"
            ) from None
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ValueError(
            f"the GitHub App private key in {source} is not an unencrypted PEM "
            "key; download a new .pem from the app's settings page"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"the GitHub App private key in {source} is not an RSA key")
    return key


@register
class GitHubAppAuth(MintingAuth):
    """``github_app``: installation access tokens minted from the app's key."""

    type_name = "github_app"
    config_model = GitHubAppConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, GitHubAppConfig)
        self.app_id = str(config.app_id)
        self.installation_id = str(config.installation_id)
        self.private_key = load_private_key(config, env)
        api = config.api_url.rstrip("/")
        self.token_url = config.token_url or (
            f"{api}/app/installations/{self.installation_id}/access_tokens"
        )

    def cache_identity(self) -> list[str]:
        return [self.token_url, self.app_id, self.installation_id]

    def app_jwt(self, now: float | None = None) -> str:
        """Return a signed app JWT valid for the next nine minutes."""
        issued = int(time.time() if now is None else now) - JWT_BACKDATE
        claims = {"iat": issued, "exp": issued + JWT_LIFETIME, "iss": self.app_id}
        return jwt.encode(claims, self.private_key, algorithm="RS256")

    async def mint(self, context: AuthContext) -> MintedToken:
        endpoint = f"GitHub App token endpoint of provider {context.provider!r}"
        headers = [
            ("authorization", f"Bearer {self.app_jwt()}"),
            ("accept", "application/vnd.github+json"),
            ("x-github-api-version", "2022-11-28"),
            ("user-agent", "outpost"),
        ]
        response = await self.client.post(self.token_url, headers, b"", endpoint)
        if response.status != 201 and not 200 <= response.status < 300:
            raise CredentialError(
                f"{endpoint} returned status {response.status}; check app_id, "
                "installation_id and the private key"
            )
        data = response.json_object(endpoint)
        token = data.get("token")
        if not isinstance(token, str) or not token.isascii() or not token:
            raise CredentialError(f"{endpoint} returned no token")
        return MintedToken(token, _lifetime(data.get("expires_at"), endpoint))


def _lifetime(expires_at: object, endpoint: str) -> float | None:
    if expires_at is None:
        return None
    if not isinstance(expires_at, str):
        raise CredentialError(f"{endpoint} returned an invalid expires_at")
    try:
        moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        raise CredentialError(f"{endpoint} returned an invalid expires_at") from None
    if moment.tzinfo is None:
        raise CredentialError(f"{endpoint} returned expires_at without a time zone")
    return max(0.0, moment.timestamp() - time.time())
