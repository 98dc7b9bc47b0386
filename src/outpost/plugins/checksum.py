"""A session token minted by proving knowledge of a secret with a checksum.

Some APIs never take the secret itself: the client posts its app key, the
current time and ``SHA-256(secret + timestamp)`` in hex to a mint endpoint,
and gets back a session token with its expiry. This plugin posts::

    {"app_key": "<key>", "timestamp": "1733300000000", "checksum": "<hex>"}

to ``mint_url``. The timestamp is Unix time in milliseconds, as a string.
The token comes from ``token_field`` of the response, and its expiry from
``expires_in`` or ``expires_at`` (ISO 8601 or Unix time). The token is
cached in the store, with the mint lock, until shortly before it expires.

Load it with::

    auth:
      type: plugin
      module: outpost.plugins.checksum:ChecksumTokenAuth
      config: {mint_url: ..., app_key_env: ..., secret_env: ...}
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping

import orjson
from pydantic import field_validator

from outpost.auth.base import AuthConfig, AuthContext, CredentialError, read_secret
from outpost.auth.minting import MintedToken, MintingAuth
from outpost.auth.oauth2 import check_token_url
from outpost.plugins.expiry import lifetime_from_response, token_from_response


class ChecksumTokenConfig(AuthConfig):
    """Settings of :class:`ChecksumTokenAuth`, given under ``config:``."""

    mint_url: str
    app_key_env: str
    secret_env: str
    token_field: str = "token"  # noqa: S105 (a JSON field name)
    header: str = "Authorization"
    prefix: str = "Bearer "

    @field_validator("mint_url")
    @classmethod
    def _check_mint_url(cls, value: str) -> str:
        return check_token_url(value)


def checksum(secret: str, timestamp: str) -> str:
    """Return the lower-case hex SHA-256 of ``secret`` followed by ``timestamp``."""
    return hashlib.sha256((secret + timestamp).encode()).hexdigest()


class ChecksumTokenAuth(MintingAuth):
    """Mints a session token with an app key and a secret checksum."""

    type_name = "plugin"
    config_model = ChecksumTokenConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        assert isinstance(config, ChecksumTokenConfig)
        self.header = config.header.lower()
        self.prefix = config.prefix
        super().__init__(config, env)
        self.settings = config
        self.app_key = read_secret(env, config.app_key_env)
        self.secret = read_secret(env, config.secret_env)
        #: Returns the timestamp in milliseconds; tests replace it.
        self.clock: Callable[[], int] = lambda: time.time_ns() // 1_000_000

    def cache_identity(self) -> list[str]:
        return [self.settings.mint_url, self.app_key.reveal()]

    async def mint(self, context: AuthContext) -> MintedToken:
        endpoint = f"checksum mint endpoint of provider {context.provider!r}"
        timestamp = str(self.clock())
        request = {
            "app_key": self.app_key.reveal(),
            "timestamp": timestamp,
            "checksum": checksum(self.secret.reveal(), timestamp),
        }
        headers = [("content-type", "application/json"), ("accept", "application/json")]
        response = await self.client.post(
            self.settings.mint_url, headers, orjson.dumps(request), endpoint
        )
        if not 200 <= response.status < 300:
            raise CredentialError(
                f"{endpoint} returned status {response.status}; check the app key, the "
                "secret and the machine's clock"
            )
        data = response.json_object(endpoint)
        token = token_from_response(data, self.settings.token_field, endpoint)
        return MintedToken(token, lifetime_from_response(data, endpoint))
