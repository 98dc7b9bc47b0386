"""OAuth 2.0 access tokens minted by Outpost (RFC 6749 sections 4.4 and 6).

``oauth2_client_credentials`` requests an access token from the token
endpoint with the client credentials grant. ``oauth2_refresh_token`` trades a refresh
token that the operator seeded once for access tokens, and stores the new
refresh token whenever the endpoint rotates it. Both cache the access token
in the store through :class:`~outpost.auth.minting.TokenCache`, so one mint
serves every worker and replica, and both send ``Authorization: Bearer``.

Error messages quote only the endpoint's ``error`` code (RFC 6749 section
5.2), never ``error_description`` or the body, which may echo the request.
The client secret and refresh token never leave this module except in the
token request itself.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping
from typing import Literal
from urllib.parse import quote, urlencode, urlsplit

from pydantic import field_validator

from outpost.auth.base import (
    AuthConfig,
    AuthContext,
    CredentialError,
    read_secrets,
    register,
)
from outpost.auth.client import TokenResponse
from outpost.auth.minting import MintedToken, MintingAuth, require_store
from outpost.secret import Secret

log = logging.getLogger("outpost.auth")

ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_token_url(value: str) -> str:
    """Return ``value`` if it is an absolute http(s) URL without credentials."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"token_url {value!r} must be an absolute http:// or https:// URL"
        )
    if parts.username or parts.password:
        raise ValueError(
            "token_url must not carry a user name or password; use "
            "client_id_env and client_secret_env"
        )
    return value


def join_scope(value: str | list[str] | None) -> str | None:
    """Return a scope list as the space-separated string RFC 6749 expects."""
    if isinstance(value, list):
        return " ".join(value) or None
    return value or None


class OAuth2Config(AuthConfig):
    """Keys shared by both OAuth 2.0 grants."""

    token_url: str
    client_id_env: str
    scope: str | list[str] | None = None
    client_auth: Literal["body", "basic"] = "body"

    @field_validator("token_url")
    @classmethod
    def _check_token_url(cls, value: str) -> str:
        return check_token_url(value)


class ClientCredentialsConfig(OAuth2Config):
    """``oauth2_client_credentials``: client id and secret for an access token."""

    type: Literal["oauth2_client_credentials"]
    client_secret_env: str
    audience: str | None = None


class RefreshTokenConfig(OAuth2Config):
    """``oauth2_refresh_token``: a seeded refresh token for access tokens.

    ``client_secret_env`` is optional because public clients have no secret.
    ``refresh_token_key`` names the store record that contains the current
    refresh token, so an operator can replace it with ``outpost token set``.
    """

    type: Literal["oauth2_refresh_token"]
    client_secret_env: str | None = None
    refresh_token_env_seed: str | None = None
    refresh_token_key: str | None = None


def refresh_token_store_key(configured: str | None, provider: str) -> str:
    """Return the store key of a provider's refresh token.

    ``outpost token set`` writes here, so operators can replace the token.
    """
    return configured or f"oauth2:{provider}:refresh_token"


class OAuth2Auth(MintingAuth):
    """Shared token-request code for both grants."""

    def __init__(
        self,
        config: OAuth2Config,
        env: Mapping[str, str],
        client_secret_env: str | None,
    ) -> None:
        super().__init__(config, env)
        self.token_url = config.token_url
        variables = [config.client_id_env]
        if client_secret_env:
            variables.append(client_secret_env)
        # Every missing variable is reported at once, not one per restart.
        secrets = read_secrets(env, variables)
        self.client_id = secrets[0].reveal()
        self.client_secret = secrets[1] if client_secret_env else None
        self.scope = join_scope(config.scope)
        self.client_auth = config.client_auth

    def cache_identity(self) -> list[str]:
        return [self.token_url, self.client_id, self.scope or ""]

    async def request_token(
        self, context: AuthContext, fields: dict[str, str], hint: str = ""
    ) -> dict[str, object]:
        """POST a token request and return the JSON object of a 2xx response.

        ``hint`` replaces the default advice in the error for a rejection.
        """
        endpoint = f"token endpoint of provider {context.provider!r}"
        headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ]
        fields = dict(fields)
        if self.client_auth == "basic":
            headers.append(("authorization", self._basic_header()))
        else:
            fields["client_id"] = self.client_id
            if self.client_secret is not None:
                fields["client_secret"] = self.client_secret.reveal()

        body = urlencode(fields).encode()
        response = await self.client.post(self.token_url, headers, body, endpoint)
        return parse_token_response(response, endpoint, hint)

    def _basic_header(self) -> str:
        # RFC 6749 section 2.3.1: both parts are form-encoded before base64.
        secret = self.client_secret.reveal() if self.client_secret else ""
        pair = f"{quote(self.client_id, safe='')}:{quote(secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def parse_token_response(
    response: TokenResponse, endpoint: str, hint: str = ""
) -> dict[str, object]:
    """Return the JSON object of a 2xx response, or raise a safe CredentialError."""
    if not 200 <= response.status < 300:
        code = _error_code(response)
        detail = f" with error {code!r}" if code else ""
        advice = hint or "check the client credentials and scope"
        raise CredentialError(
            f"{endpoint} returned status {response.status}{detail}; {advice}"
        )
    return response.json_object(endpoint)


def _error_code(response: TokenResponse) -> str | None:
    try:
        data = response.json_object("")
    except CredentialError:
        return None
    code = data.get("error")
    if isinstance(code, str) and ERROR_CODE.fullmatch(code):
        return code
    return None


def minted_access_token(data: dict[str, object], endpoint: str) -> MintedToken:
    """Read ``access_token`` and ``expires_in`` from a token response."""
    token = data.get("access_token")
    if not isinstance(token, str) or not token:
        raise CredentialError(f"{endpoint} returned no access_token")
    if not token.isascii() or not token.isprintable():
        raise CredentialError(
            f"{endpoint} returned an access_token that cannot go in a header"
        )
    return MintedToken(token, _expires_in(data.get("expires_in"), endpoint))


def _expires_in(value: object, endpoint: str) -> float | None:
    if value is None:
        return None
    # Some servers send the number as a string.
    if isinstance(value, str) and value.strip().isdigit():
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    raise CredentialError(f"{endpoint} returned an invalid expires_in")


@register
class ClientCredentialsAuth(OAuth2Auth):
    """``oauth2_client_credentials``: RFC 6749 section 4.4."""

    type_name = "oauth2_client_credentials"
    config_model = ClientCredentialsConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        assert isinstance(config, ClientCredentialsConfig)
        super().__init__(config, env, config.client_secret_env)
        self.audience = config.audience

    def cache_identity(self) -> list[str]:
        return [*super().cache_identity(), self.audience or ""]

    async def mint(self, context: AuthContext) -> MintedToken:
        fields = {"grant_type": "client_credentials"}
        if self.scope:
            fields["scope"] = self.scope
        if self.audience:
            fields["audience"] = self.audience
        data = await self.request_token(context, fields)
        endpoint = f"token endpoint of provider {context.provider!r}"
        return minted_access_token(data, endpoint)


@register
class RefreshTokenAuth(OAuth2Auth):
    """``oauth2_refresh_token``: RFC 6749 section 6, with rotation.

    The current refresh token lives in the store under ``refresh_token_key``
    (default ``oauth2:<provider>:refresh_token``). The seed variable is read
    only while the store has none, so a rotated token always wins over the
    seed. The refresh runs under the mint lock, so two workers never spend
    the same single-use refresh token.
    """

    type_name = "oauth2_refresh_token"
    config_model = RefreshTokenConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        assert isinstance(config, RefreshTokenConfig)
        super().__init__(config, env, config.client_secret_env)
        self.seed: Secret | None = None
        if config.refresh_token_env_seed and env.get(config.refresh_token_env_seed):
            self.seed = Secret(env[config.refresh_token_env_seed])
        self.seed_variable = config.refresh_token_env_seed
        self.refresh_token_key = config.refresh_token_key

    def refresh_key(self, provider: str) -> str:
        """Return the store key of the current refresh token."""
        return refresh_token_store_key(self.refresh_token_key, provider)

    async def mint(self, context: AuthContext) -> MintedToken:
        store = require_store(context)
        key = self.refresh_key(context.provider)
        refresh_token = await self._current_refresh_token(
            store_value=await store.get(key)
        )
        if refresh_token is None:
            raise CredentialError(
                f"no refresh token for provider {context.provider!r}; set "
                f"{self.seed_variable or 'refresh_token_env_seed'} or store one "
                f"under {key!r} with 'outpost token set'"
            )

        fields = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if self.scope:
            fields["scope"] = self.scope
        hint = (
            "check the client credentials, or store a new refresh token with "
            f"'outpost token set --provider {context.provider}'"
        )
        data = await self.request_token(context, fields, hint)

        # Store a rotated refresh token before anything else can fail: the
        # endpoint may already have revoked the old one.
        rotated = data.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != refresh_token:
            await store.set(key, rotated.encode())
            log.info("refresh token rotated provider=%s", context.provider)
        endpoint = f"token endpoint of provider {context.provider!r}"
        return minted_access_token(data, endpoint)

    async def _current_refresh_token(self, store_value: bytes | None) -> str | None:
        if store_value:
            return store_value.decode()
        return self.seed.reveal() if self.seed else None
