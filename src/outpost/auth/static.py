"""Auth modules with a fixed credential: bearer tokens, API keys, Basic auth.

Each reads its secret from the environment once, at startup, and writes it
into every request. None of them needs the store or the network.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator

from outpost.auth.base import (
    AppliedCredential,
    AuthConfig,
    AuthContext,
    AuthModule,
    read_secret,
    read_secrets,
    register,
)
from outpost.config.models import StrictModel
from outpost.http import OutgoingRequest
from outpost.secret import Secret


class EnvOrValue(StrictModel):
    """A credential given by environment variable name, or literally.

    A literal ``value`` is a pydantic ``SecretStr``, so the model's ``repr``
    and validation errors never show it.
    """

    env: str | None = None
    value: SecretStr | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.env is None) == (self.value is None):
            raise ValueError("give exactly one of 'env' (a variable name) or 'value'")
        return self

    def load(self, env: Mapping[str, str]) -> Secret:
        """Return the secret, from the environment or the literal value."""
        if self.value is not None:
            return Secret(self.value.get_secret_value())
        assert self.env is not None
        return read_secret(env, self.env)


@register
class NoAuth(AuthModule):
    """Injects nothing: for public APIs that still need routing and limits."""

    type_name = "none"

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        return None


class BearerStaticConfig(AuthConfig):
    """``bearer_static``: a fixed token in ``Authorization: Bearer``."""

    type: Literal["bearer_static"]
    env: str | None = None
    value: SecretStr | None = None
    header: str = "Authorization"
    prefix: str = "Bearer "

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        EnvOrValue(env=self.env, value=self.value)
        return self


class HeaderTokenAuth(AuthModule):
    """A fixed secret written into one header after a fixed prefix."""

    def __init__(self, header: str, prefix: str, secret: Secret, config: AuthConfig):
        super().__init__(config, {})
        self.header = header.lower()
        self.prefix = prefix
        self.secret = secret
        self.injected_headers = frozenset({self.header})

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        request.set_header(self.header, self.prefix + self.secret.reveal())
        return None


@register
class BearerStaticAuth(HeaderTokenAuth):
    """``bearer_static``: ``Authorization: Bearer <token>`` by default."""

    type_name = "bearer_static"
    config_model = BearerStaticConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        assert isinstance(config, BearerStaticConfig)
        secret = EnvOrValue(env=config.env, value=config.value).load(env)
        super().__init__(config.header, config.prefix, secret, config)


class ApiKeyHeaderConfig(AuthConfig):
    """``api_key_header``: a key in a named header, with an optional prefix."""

    type: Literal["api_key_header"]
    env: str
    header: str
    prefix: str = ""


@register
class ApiKeyHeaderAuth(HeaderTokenAuth):
    """``api_key_header``: ``<header>: <prefix><key>``."""

    type_name = "api_key_header"
    config_model = ApiKeyHeaderConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        assert isinstance(config, ApiKeyHeaderConfig)
        secret = read_secret(env, config.env)
        super().__init__(config.header, config.prefix, secret, config)


class ApiKeyQueryConfig(AuthConfig):
    """``api_key_query``: a key in one query parameter."""

    type: Literal["api_key_query"]
    env: str
    param: str


@register
class ApiKeyQueryAuth(AuthModule):
    """``api_key_query``: sets one query parameter, replacing any the agent sent."""

    type_name = "api_key_query"
    config_model = ApiKeyQueryConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, ApiKeyQueryConfig)
        self.param = config.param
        self.secret = read_secret(env, config.env)
        self.injected_query_params = frozenset({config.param})

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        request.set_query_param(self.param, self.secret.reveal())
        return None


class BasicAuthConfig(AuthConfig):
    """``basic_auth``: user name and password from two variables."""

    type: Literal["basic_auth"]
    username_env: str = Field(validation_alias=AliasChoices("username_env", "user_env"))
    password_env: str = Field(validation_alias=AliasChoices("password_env", "pass_env"))


@register
class BasicAuth(AuthModule):
    """``basic_auth``: ``Authorization: Basic base64(user:password)``."""

    type_name = "basic_auth"
    config_model = BasicAuthConfig
    injected_headers = frozenset({"authorization"})

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, BasicAuthConfig)
        username, password = read_secrets(
            env, [config.username_env, config.password_env]
        )
        pair = f"{username.reveal()}:{password.reveal()}".encode()
        self.header_value = Secret("Basic " + base64.b64encode(pair).decode("ascii"))

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        request.set_header("authorization", self.header_value.reveal())
        return None


class CustomHeadersConfig(AuthConfig):
    """``custom_headers``: several fixed headers, each from a variable or literal."""

    type: Literal["custom_headers"]
    headers: dict[str, EnvOrValue]

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.headers:
            raise ValueError("custom_headers needs at least one header")
        return self


@register
class CustomHeadersAuth(AuthModule):
    """``custom_headers``: every listed header set on every request."""

    type_name = "custom_headers"
    config_model = CustomHeadersConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, CustomHeadersConfig)
        variables = [item.env for item in config.headers.values() if item.env]
        read_secrets(env, variables)
        self.values = {
            name.lower(): source.load(env) for name, source in config.headers.items()
        }
        self.injected_headers = frozenset(self.values)

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        for name, secret in self.values.items():
            request.set_header(name, secret.reveal())
        return None
