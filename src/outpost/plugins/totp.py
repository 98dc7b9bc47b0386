"""A daily session token minted with a user name, password and TOTP code.

Several broker and trading APIs issue a session token once a day after a
login that includes a one-time code from an authenticator app. This plugin
computes the code itself (RFC 6238 TOTP, via ``pyotp``) from the shared
base32 secret, posts the login to ``mint_url`` as JSON::

    {"user": "<user>", "password": "<password>", "totp": "123456"}

reads the token from ``token_field`` of the JSON response, and caches it in
the store, with the mint lock, until shortly before it expires. The expiry
comes from ``expires_in`` or ``expires_at`` in the response, else
``default_lifetime`` (one day).

Load it with::

    auth:
      type: plugin
      module: outpost.plugins.totp:TotpTokenAuth
      config: {mint_url: ..., user_env: ..., password_env: ..., totp_secret_env: ...}
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping

import orjson
import pyotp
from pydantic import Field, field_validator

from outpost.auth.base import AuthConfig, AuthContext, CredentialError, read_secret
from outpost.auth.minting import MintedToken, MintingAuth
from outpost.auth.oauth2 import check_token_url
from outpost.plugins.expiry import lifetime_from_response, token_from_response


class TotpTokenConfig(AuthConfig):
    """Settings of :class:`TotpTokenAuth`, given under ``config:``."""

    mint_url: str
    user_env: str
    password_env: str | None = None
    totp_secret_env: str
    digits: int = Field(default=6, ge=6, le=10)
    period: int = Field(default=30, gt=0)
    token_field: str = "token"  # noqa: S105 (a JSON field name)
    header: str = "Authorization"
    prefix: str = "Bearer "
    default_lifetime: float = Field(default=86_400, gt=0)

    @field_validator("mint_url")
    @classmethod
    def _check_mint_url(cls, value: str) -> str:
        return check_token_url(value)


class TotpTokenAuth(MintingAuth):
    """Logs in with a TOTP code and sends the resulting daily token."""

    type_name = "plugin"
    config_model = TotpTokenConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        assert isinstance(config, TotpTokenConfig)
        self.header = config.header.lower()
        self.prefix = config.prefix
        super().__init__(config, env)
        self.settings = config
        self.user = read_secret(env, config.user_env)
        self.password = (
            read_secret(env, config.password_env) if config.password_env else None
        )
        secret = read_secret(env, config.totp_secret_env)
        try:
            pyotp.TOTP(secret.reveal()).now()
        except (binascii.Error, ValueError):
            raise ValueError(
                f"{config.totp_secret_env} is not a base32 TOTP secret; copy the "
                "secret shown when the authenticator was set up"
            ) from None
        self.totp = pyotp.TOTP(
            secret.reveal(), digits=config.digits, interval=config.period
        )

    def cache_identity(self) -> list[str]:
        return [self.settings.mint_url, self.user.reveal()]

    async def mint(self, context: AuthContext) -> MintedToken:
        endpoint = f"TOTP login endpoint of provider {context.provider!r}"
        login = {"user": self.user.reveal(), "totp": self.totp.now()}
        if self.password is not None:
            login["password"] = self.password.reveal()
        headers = [("content-type", "application/json"), ("accept", "application/json")]
        response = await self.client.post(
            self.settings.mint_url, headers, orjson.dumps(login), endpoint
        )
        if not 200 <= response.status < 300:
            raise CredentialError(
                f"{endpoint} returned status {response.status}; check the user, "
                "password and TOTP secret, and the machine's clock"
            )
        data = response.json_object(endpoint)
        token = token_from_response(data, self.settings.token_field, endpoint)
        lifetime = lifetime_from_response(data, endpoint)
        if lifetime is None:
            lifetime = self.settings.default_lifetime
        return MintedToken(token, lifetime)
