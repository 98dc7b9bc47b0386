"""The auth protocol that every credential scheme implements.

An auth module is built once from its YAML block. Per request it rewrites the
outgoing request (headers, query, body) and returns the credential it used;
after the response it may declare that credential rejected, and the proxy
then invalidates it with compare-and-delete so that a token rotated in the
meantime is never deleted by a late response for the old one.

A module must never put a secret into an exception message, a log line or
``repr``: secrets stay inside :class:`~outpost.secret.Secret` until
:meth:`AuthModule.apply` writes them into the request.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import Field, model_validator

from outpost.config.models import StrictModel
from outpost.http import OutgoingRequest
from outpost.secret import Secret

if TYPE_CHECKING:
    from outpost.store.base import Store


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AuthConfig(StrictModel):
    """Keys that every auth type accepts.

    Every key with the word ``env`` in its name (``env``, ``password_env``,
    ``env_seed``) must be a variable name. The value is never quoted in the
    error, because a secret pasted there by mistake would be shown.
    """

    type: str
    invalidate_on: list[int] = Field(default_factory=lambda: [401])

    @model_validator(mode="after")
    def _check_variable_names(self) -> Self:
        for key, value in self:
            is_variable = "env" in key.split("_")
            if is_variable and isinstance(value, str) and not ENV_NAME.fullmatch(value):
                raise ValueError(
                    f"'{key}' must be an environment variable name made of "
                    "letters, digits and '_', for example GITHUB_TOKEN; put the "
                    "secret itself in that variable, never in this file"
                )
        return self


class MissingCredentialError(Exception):
    """Environment variables that a provider's credential needs are unset."""

    def __init__(self, variables: list[str]) -> None:
        self.variables = variables
        names = ", ".join(variables)
        super().__init__(f"credential environment variable not set: {names}")


class CredentialError(Exception):
    """The credential could not be produced (mint failed, store value missing).

    The message reaches the agent, so it must name what failed and what to do,
    never the credential or the token endpoint's raw response.
    """


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Context an auth module may use while rewriting a request."""

    provider: str
    store: Store | None = None


@dataclass(frozen=True, slots=True)
class AppliedCredential:
    """The credential one request carried, for compare-and-delete invalidation."""

    store_key: str | None = None
    value: bytes | None = None


class AuthModule(abc.ABC):
    """One credential scheme, built once per provider from its YAML block."""

    type_name: ClassVar[str]
    config_model: ClassVar[type[AuthConfig]] = AuthConfig

    #: Lower-case header names this module sets; the agent's values are dropped.
    injected_headers: frozenset[str] = frozenset()
    #: Query parameter names this module sets; the agent's values are replaced.
    injected_query_params: frozenset[str] = frozenset()
    #: True when the module needs the whole body (it signs it).
    signs_body: bool = False

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        self.config = config
        self.invalidate_on = frozenset(config.invalidate_on)

    @abc.abstractmethod
    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        """Write the credential into ``request`` and return what was used."""

    async def is_rejected(
        self, status: int, body: bytes | None, applied: AppliedCredential | None
    ) -> bool:
        """Return True when the upstream rejected the credential in ``applied``."""
        return status in self.invalidate_on

    async def invalidate(
        self, applied: AppliedCredential | None, context: AuthContext
    ) -> None:
        """Drop a rejected credential. Static credentials have nothing to drop."""
        return None

    def wants_response_body(self, status: int) -> bool:
        """Return True when :meth:`is_rejected` needs the response body."""
        return False

    async def close(self) -> None:
        """Release clients or tasks the module holds."""
        return None


def read_secret(env: Mapping[str, str], variable: str) -> Secret:
    """Read one credential variable; unset or empty raises MissingCredentialError."""
    value = env.get(variable, "")
    if not value:
        raise MissingCredentialError([variable])
    return Secret(value)


def read_secrets(env: Mapping[str, str], variables: list[str]) -> list[Secret]:
    """Read several variables, reporting every missing one at once."""
    missing = [name for name in variables if not env.get(name)]
    if missing:
        raise MissingCredentialError(missing)
    return [Secret(env[name]) for name in variables]


AUTH_TYPES: dict[str, type[AuthModule]] = {}
AUTH_TYPE_ALIASES: dict[str, str] = {"bearer_redis": "bearer_store"}


def register(module: type[AuthModule]) -> type[AuthModule]:
    """Class decorator that makes an auth module available by its type name."""
    AUTH_TYPES[module.type_name] = module
    return module


def resolve_auth_type(name: Any) -> type[AuthModule] | None:
    """Return the module class for a YAML ``type`` value, honouring aliases."""
    if not isinstance(name, str):
        return None
    return AUTH_TYPES.get(AUTH_TYPE_ALIASES.get(name, name))
