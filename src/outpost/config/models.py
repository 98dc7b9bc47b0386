"""Pydantic models of the provider and host files.

Every model forbids unknown keys: a misspelt key must stop startup rather than
silently drop a rule. Older key names (``pattern``, ``method``, ``can_trade``)
are accepted as aliases so that existing files keep loading unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"}
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Seconds = Annotated[float, Field(ge=0)]


class RateWindow(StrictModel):
    """One token bucket: ``capacity`` requests per ``window_ms`` milliseconds."""

    capacity: Annotated[int, Field(gt=0)]
    window_ms: Annotated[int, Field(gt=0)]


DEFAULT_RATE_LIMITS: dict[str, list[RateWindow]] = {
    "default": [
        RateWindow(capacity=50, window_ms=1_000),
        RateWindow(capacity=500, window_ms=60_000),
    ]
}


def _normalise_methods(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value
    methods = [str(item).upper() for item in value]
    if "*" in methods:
        return None
    unknown = sorted(set(methods) - HTTP_METHODS)
    if unknown:
        raise ValueError(
            f"unknown HTTP method {unknown[0]!r}; use one of "
            f"{', '.join(sorted(HTTP_METHODS))} or '*'"
        )
    return methods


class AllowRule(StrictModel):
    """One allow rule: a path pattern, the methods it admits, and its route."""

    path: str = Field(validation_alias=AliasChoices("path", "pattern"))
    methods: list[str] | None = None
    category: str = "default"
    cache_ttl: Seconds = 0
    sensitive: bool = False

    @model_validator(mode="before")
    @classmethod
    def _accept_short_forms(cls, value: Any) -> Any:
        # A bare string is a rule for any method; `method: GET` is the older
        # single-method spelling of `methods: [GET]`.
        if isinstance(value, str):
            return {"path": value}
        if isinstance(value, dict) and "method" in value:
            value = dict(value)
            if "methods" in value:
                raise ValueError("give either 'method' or 'methods', not both")
            value["methods"] = value.pop("method")
        return value

    @field_validator("methods", mode="before")
    @classmethod
    def _check_methods(cls, value: Any) -> Any:
        return _normalise_methods(value)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        return _check_pattern(value)


def _check_pattern(value: str) -> str:
    # Compiled here, not only when the server starts, so that `outpost check`
    # reports a pattern the matcher would reject, with its file and line.
    from outpost.policy.patterns import compile_pattern

    compile_pattern(value)
    return value


class Forwarding(StrictModel):
    """How requests to one provider are classified and limited."""

    mode: Literal["transparent", "allowlist"] = "transparent"
    allow: list[AllowRule] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)
    treat_writes_as_sensitive: bool = True
    default_cache_ttl: Seconds = 0
    default_category: str = "default"
    rate_limits: dict[str, list[RateWindow]] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_LIMITS)
    )
    allow_path_parameters: bool = False

    @field_validator("deny")
    @classmethod
    def _check_deny(cls, value: list[str]) -> list[str]:
        return [_check_pattern(pattern) for pattern in value]


class Timeouts(StrictModel):
    """Upstream timeouts in seconds. LLM answers are slow, so ``read`` is long."""

    connect: Annotated[float, Field(gt=0)] = 5
    read: Annotated[float, Field(gt=0)] = 300
    write: Annotated[float, Field(gt=0)] = 60
    pool: Annotated[float, Field(gt=0)] = 5


class ProviderFile(StrictModel):
    """One provider YAML file. ``auth`` is validated by its auth module's model."""

    name: str
    base_url: str
    auth: dict[str, Any]
    description: str = ""
    docs_url: str = ""
    enabled: bool = True
    default_headers: dict[str, str] = Field(default_factory=dict)
    strip_response_headers: list[str] = Field(default_factory=list)
    forwarding: Forwarding = Field(default_factory=Forwarding)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    version: int | str | None = None

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        name = value.lower()
        if not PROVIDER_NAME.fullmatch(name):
            raise ValueError(
                f"provider name {value!r} must match [a-z0-9][a-z0-9_-]*, "
                "for example 'github' or 'my-api'"
            )
        return name

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        from outpost.config.urls import parse_base_url

        parse_base_url(value)
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _check_auth_has_type(cls, value: Any) -> Any:
        if isinstance(value, dict) and "type" not in value:
            raise ValueError("auth needs a 'type', for example {type: bearer_static}")
        return value


class HostEntry(StrictModel):
    """One caller: the networks it connects from and what it may do."""

    id: str
    cidrs: list[str]
    auth_token_env: str | None = None
    can_call_sensitive: bool = Field(
        default=False, validation_alias=AliasChoices("can_call_sensitive", "can_trade")
    )
    providers: list[str] | None = None
    description: str = ""

    @field_validator("cidrs")
    @classmethod
    def _check_cidrs(cls, value: list[str]) -> list[str]:
        from outpost.config.urls import parse_cidr

        if not value:
            raise ValueError("a host needs at least one CIDR, for example 127.0.0.1/32")
        for cidr in value:
            parse_cidr(cidr)
        return value

    @field_validator("providers")
    @classmethod
    def _lower_providers(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [name.lower() for name in value]


class HostsFile(StrictModel):
    """The ``hosts.yaml`` file: the callers allowed to reach Outpost."""

    hosts: list[HostEntry]
    version: int | str | None = None

    @model_validator(mode="after")
    def _check_unique_ids(self) -> HostsFile:
        seen: set[str] = set()
        for host in self.hosts:
            if host.id in seen:
                raise ValueError(
                    f"host id {host.id!r} appears twice; ids must be unique"
                )
            seen.add(host.id)
        return self
