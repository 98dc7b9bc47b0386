"""``bearer_store``: a bearer token held in the state store, rotatable live.

The token is read from the store on every request, so an operator rotates it
with ``outpost token set --provider NAME`` and the next request, in every
worker and replica, carries the new value without a restart.

- ``env_seed`` names a variable whose value is written to the store when the
  store contains no token. The write is set-if-absent, so it never replaces a
  token that an operator or another worker stored first. Each distinct seed
  is written at most once: after that token is rotated, deleted or rejected,
  the same seed is never written again, so a rejected seed does not come
  back on the next request.
- A rejection (a status in ``invalidate_on``, or a JSON body whose
  ``invalidate_on_body_codes.json_path`` holds one of ``codes``) deletes the
  token by compare-and-delete of the exact value that request carried. A
  late rejection of an old token therefore never deletes a newer one.

The token never appears in an exception, a log line or ``repr``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from typing import Annotated, Literal

import orjson
from pydantic import AliasChoices, Field, field_validator

from outpost.auth.base import (
    AppliedCredential,
    AuthConfig,
    AuthContext,
    AuthModule,
    CredentialError,
    register,
)
from outpost.config.models import StrictModel
from outpost.http import OutgoingRequest
from outpost.secret import Secret
from outpost.store.base import Store

log = logging.getLogger("outpost.auth")

JSON_PATH_STEP = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]")
TOKEN_CHARACTERS = re.compile(rb"[\x21-\x7e]+")
"""Visible ASCII only: a token with spaces or control characters would
corrupt the header it is written into."""
SEEDED_SUFFIX = ":seeded"


def parse_json_path(path: str) -> tuple[str | int, ...]:
    """Split ``$.a.b[0].c`` into ``("a", "b", 0, "c")``, or raise ValueError.

    Only member names and array indexes are supported, which covers the
    error fields that APIs put in their bodies.
    """
    if not path.startswith("$"):
        raise ValueError(
            f"json_path {path!r} must start with '$', for example '$.error.code'"
        )
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = JSON_PATH_STEP.match(path, position)
        if match is None:
            raise ValueError(
                f"json_path {path!r} is invalid at character {position + 1}; use "
                "'.name' and '[index]' steps, for example '$.errors[0].code'"
            )
        name, index = match.groups()
        steps.append(name if name is not None else int(index))
        position = match.end()
    if not steps:
        raise ValueError(
            f"json_path {path!r} selects nothing; add a step like '.error'"
        )
    return tuple(steps)


def find_json_value(document: object, steps: tuple[str | int, ...]) -> object:
    """Return the value at ``steps`` in a parsed JSON document, or None."""
    value = document
    for step in steps:
        if isinstance(step, str) and isinstance(value, dict):
            value = value.get(step)
        elif isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        else:
            return None
    return value


class BodyCodes(StrictModel):
    """Error codes in a JSON response body that mean the token was rejected."""

    json_path: str
    codes: Annotated[list[str | int], Field(min_length=1)]

    @field_validator("json_path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        parse_json_path(value)
        return value

    def matches(self, body: bytes) -> bool:
        """Return True when ``body`` is JSON with a listed code at the path."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        value = find_json_value(document, parse_json_path(self.json_path))
        if isinstance(value, bool) or not isinstance(value, str | int):
            return False
        return str(value) in {str(code) for code in self.codes}


class BearerStoreConfig(AuthConfig):
    """``bearer_store`` (older name ``bearer_redis``): a token kept in the store."""

    type: Literal["bearer_store"]
    key: str | None = Field(
        default=None, validation_alias=AliasChoices("key", "redis_key")
    )
    env_seed: str | None = None
    header: str = "Authorization"
    prefix: str = "Bearer "
    invalidate_on_body_codes: BodyCodes | None = None

    @field_validator("key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("key must not be empty; omit it to use token:<provider>")
        return value

    def store_key(self, provider: str) -> str:
        """Return the store key of the token: ``key``, else ``token:<provider>``."""
        return self.key if self.key is not None else f"token:{provider}"


@register
class BearerStoreAuth(AuthModule):
    """``bearer_store``: ``<header>: <prefix><token>`` with the token from the store."""

    type_name = "bearer_store"
    config_model = BearerStoreConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, BearerStoreConfig)
        self.settings = config
        self.header = config.header.lower()
        self.injected_headers = frozenset({self.header})
        # An unset seed variable is not an error: the store may hold a token
        # set with `outpost token set`, and the request error names both fixes.
        seed = env.get(config.env_seed, "") if config.env_seed else ""
        self.seed = Secret(seed) if seed else None

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        store = self._store(context)
        key = self.settings.store_key(context.provider)
        token = await store.get(key)
        if token is None and self.seed is not None:
            token = await self._write_seed(store, key)
        if token is None:
            raise CredentialError(self._missing_message(context.provider, key))
        if not TOKEN_CHARACTERS.fullmatch(token):
            raise CredentialError(
                f"the token stored under {key!r} contains spaces, control or "
                "non-ASCII characters; store it again with outpost token set "
                f"--provider {context.provider}"
            )

        request.set_header(self.header, self.settings.prefix + token.decode("ascii"))
        return AppliedCredential(store_key=key, value=token)

    async def is_rejected(
        self, status: int, body: bytes | None, applied: AppliedCredential | None
    ) -> bool:
        if status in self.invalidate_on:
            return True
        codes = self.settings.invalidate_on_body_codes
        return codes is not None and body is not None and codes.matches(body)

    def wants_response_body(self, status: int) -> bool:
        return (
            self.settings.invalidate_on_body_codes is not None
            and status not in self.invalidate_on
        )

    async def invalidate(
        self, applied: AppliedCredential | None, context: AuthContext
    ) -> None:
        if applied is None or applied.store_key is None or applied.value is None:
            return
        store = self._store(context)
        if await store.compare_and_delete(applied.store_key, applied.value):
            log.warning(
                "upstream rejected the stored token of provider %s, so key %s was "
                "deleted; store a new one with outpost token set --provider %s",
                context.provider,
                applied.store_key,
                context.provider,
            )

    async def _write_seed(self, store: Store, key: str) -> bytes | None:
        """Write the seed unless this seed was written before; return the token."""
        assert self.seed is not None
        seed = self.seed.reveal().encode()
        marker = key + SEEDED_SUFFIX
        digest = hashlib.sha256(seed).hexdigest().encode()
        if await store.get(marker) == digest:
            return None
        if await store.set_if_absent(key, seed):
            log.info("seeded the token of key %s from %s", key, self.settings.env_seed)
        await store.set(marker, digest)
        return await store.get(key)

    def _store(self, context: AuthContext) -> Store:
        if context.store is None:
            raise CredentialError(
                f"provider {context.provider!r} keeps its token in the state store, "
                "but no store is open"
            )
        return context.store

    def _missing_message(self, provider: str, key: str) -> str:
        message = (
            f"no token is stored under {key!r}; run outpost token set "
            f"--provider {provider}"
        )
        variable = self.settings.env_seed
        if variable is not None and self.seed is None:
            message += f", or set {variable} and restart Outpost"
        elif variable is not None:
            message += f" (the seed from {variable} was already used and replaced)"
        return message
