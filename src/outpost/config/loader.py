"""Loading and validating provider directories and the hosts file.

Every error in every file is collected and reported together, each located
as ``file:line:column`` with its key path and, for a misspelt key, the
closest valid one. Loading never fails open: an unknown key, a duplicate
provider in one directory or a PSK variable that is unset stops startup.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from outpost.auth.base import (
    AuthConfig,
    AuthModule,
    MissingCredentialError,
    resolve_auth_type,
)
from outpost.config.models import HostsFile, ProviderFile
from outpost.config.source import (
    ConfigError,
    ConfigErrors,
    KeyPath,
    LocatedDocument,
    load_yaml,
)
from outpost.config.urls import BaseUrl, parse_base_url
from outpost.secret import Secret


@dataclass
class ProviderDefinition:
    """A validated provider file with its auth module built.

    ``missing_env`` lists credential variables that were unset; such a
    provider is only loaded with ``--allow-missing-credentials`` and responds with
    503 until the variables are set and the config reloaded.
    """

    spec: ProviderFile
    source: Path
    base: BaseUrl
    auth_config: AuthConfig
    auth: AuthModule | None
    missing_env: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Return the provider's lower-case name."""
        return self.spec.name


@dataclass
class LoadedConfig:
    """Everything read from disk: enabled providers, hosts and their PSKs."""

    providers: dict[str, ProviderDefinition]
    hosts: HostsFile | None
    host_keys: dict[str, Secret]
    hosts_source: Path | None
    warnings: list[str] = field(default_factory=list)


def load_config(
    provider_dirs: Iterable[Path],
    hosts_file: Path | None,
    env: Mapping[str, str],
    *,
    allow_missing_credentials: bool = False,
) -> LoadedConfig:
    """Load every provider directory and the hosts file, or raise ConfigErrors."""
    errors: list[ConfigError] = []
    providers = _load_provider_dirs(
        list(provider_dirs), env, allow_missing_credentials, errors
    )
    hosts, host_keys = _load_hosts(hosts_file, env, providers, errors)
    if errors:
        raise ConfigErrors(errors)

    warnings = []
    if hosts_file is None:
        warnings.append(
            "no hosts file given: only loopback callers (127.0.0.0/8, ::1) are "
            "allowed; pass --hosts FILE to admit other callers"
        )
    enabled = {name: item for name, item in providers.items() if item.spec.enabled}
    return LoadedConfig(enabled, hosts, host_keys, hosts_file, warnings)


def _load_provider_dirs(
    directories: list[Path],
    env: Mapping[str, str],
    allow_missing: bool,
    errors: list[ConfigError],
) -> dict[str, ProviderDefinition]:
    providers: dict[str, ProviderDefinition] = {}
    for directory in directories:
        if not directory.is_dir():
            errors.append(
                ConfigError(
                    "providers directory not found; create it or fix the "
                    "--providers path",
                    file=directory,
                )
            )
            continue
        # A later directory overrides an earlier one by name, but two files
        # in one directory with the same name are a mistake.
        seen_here: dict[str, Path] = {}
        files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
        for file in files:
            definition = _load_provider_file(file, env, allow_missing, errors)
            if definition is None:
                continue
            earlier = seen_here.get(definition.name)
            if earlier is not None:
                errors.append(
                    ConfigError(
                        f"provider {definition.name!r} is also defined in {earlier}; "
                        "names must be unique within one directory",
                        file=file,
                    )
                )
                continue
            seen_here[definition.name] = file
            providers[definition.name] = definition
    return providers


def _load_provider_file(
    file: Path,
    env: Mapping[str, str],
    allow_missing: bool,
    errors: list[ConfigError],
) -> ProviderDefinition | None:
    try:
        document = load_yaml(file)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
        return None
    if not isinstance(document.data, dict):
        errors.append(document.error("a provider file must be a mapping of keys"))
        return None

    try:
        spec = ProviderFile.model_validate(document.data)
    except ValidationError as exc:
        errors.extend(validation_errors(exc, document, ProviderFile))
        return None

    auth_config, auth_class = _validate_auth(spec.auth, document, errors)
    if auth_config is None or auth_class is None:
        return None

    # The raw auth block may hold a literal credential; keep only the
    # validated form, whose secret fields are masked.
    spec = spec.model_copy(update={"auth": auth_config.model_dump()})
    definition = ProviderDefinition(
        spec=spec,
        source=file,
        base=parse_base_url(spec.base_url),
        auth_config=auth_config,
        auth=None,
    )
    try:
        definition.auth = auth_class(auth_config, env)
    except MissingCredentialError as exc:
        definition.missing_env = exc.variables
        if spec.enabled and not allow_missing:
            names = ", ".join(exc.variables)
            if len(exc.variables) == 1:
                missing = f"credential variable {names} is not set; export it"
            else:
                missing = f"credential variables {names} are not set; export them"
            errors.append(
                document.error(
                    f"provider {spec.name!r}: {missing}, disable the provider with "
                    "'enabled: false', or start with --allow-missing-credentials",
                    ("auth",),
                )
            )
    except ValueError as exc:
        errors.append(document.error(f"invalid auth settings: {exc}", ("auth",)))
        return None
    return definition


def _validate_auth(
    raw: dict[str, Any], document: LocatedDocument, errors: list[ConfigError]
) -> tuple[AuthConfig | None, type[AuthModule] | None]:
    from outpost.auth import AUTH_TYPES

    auth_class = resolve_auth_type(raw.get("type"))
    if auth_class is None:
        known = sorted(AUTH_TYPES)
        hint = _suggest(str(raw.get("type")), known)
        errors.append(
            document.error(
                f"unknown auth type {raw.get('type')!r}{hint}; "
                f"expected one of: {', '.join(known)}",
                ("auth", "type"),
            )
        )
        return None, None
    data = dict(raw, type=auth_class.type_name)
    try:
        config = auth_class.config_model.model_validate(data)
    except ValidationError as exc:
        errors.extend(
            validation_errors(exc, document, auth_class.config_model, prefix=("auth",))
        )
        return None, None
    return config, auth_class


def _load_hosts(
    hosts_file: Path | None,
    env: Mapping[str, str],
    providers: dict[str, ProviderDefinition],
    errors: list[ConfigError],
) -> tuple[HostsFile | None, dict[str, Secret]]:
    if hosts_file is None:
        return None, {}
    try:
        document = load_yaml(hosts_file)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
        return None, {}
    if not isinstance(document.data, dict):
        errors.append(document.error("the hosts file must be a mapping with 'hosts'"))
        return None, {}
    try:
        hosts = HostsFile.model_validate(document.data)
    except ValidationError as exc:
        errors.extend(validation_errors(exc, document, HostsFile))
        return None, {}

    keys: dict[str, Secret] = {}
    for index, host in enumerate(hosts.hosts):
        location = ("hosts", index)
        if host.auth_token_env is not None:
            value = env.get(host.auth_token_env, "")
            if not value:
                errors.append(
                    document.error(
                        f"host {host.id!r}: pre-shared key variable "
                        f"{host.auth_token_env} is unset or empty; set it, or remove "
                        "auth_token_env to admit this host by address alone",
                        (*location, "auth_token_env"),
                    )
                )
            else:
                keys[host.id] = Secret(value)
        for position, name in enumerate(host.providers or []):
            if name not in providers:
                hint = _suggest(name, sorted(providers))
                errors.append(
                    document.error(
                        f"host {host.id!r} lists unknown provider {name!r}{hint}",
                        (*location, "providers", position),
                    )
                )
    return hosts, keys


def validation_errors(
    exc: ValidationError,
    document: LocatedDocument,
    model: type[BaseModel],
    *,
    prefix: KeyPath = (),
) -> list[ConfigError]:
    """Turn pydantic errors into located errors with close-match suggestions."""
    results = []
    for item in exc.errors(include_url=False):
        location = tuple(part for part in item["loc"] if not _is_union_tag(part))
        key_path: KeyPath = (*prefix, *location)
        if item["type"] == "extra_forbidden":
            key = str(location[-1]) if location else ""
            allowed = _allowed_keys(model, location[:-1])
            hint = _suggest(key, allowed)
            message = f"unknown key {key!r}{hint}"
            if allowed and not hint:
                message += f"; expected one of: {', '.join(sorted(allowed))}"
        else:
            message = _describe(item, show_input=not _is_secret_key(key_path))
        results.append(document.error(message, key_path))
    return results


def _is_union_tag(part: int | str) -> bool:
    # Pydantic adds the member type's name to locations inside unions.
    return isinstance(part, str) and ("[" in part or part in {"str", "list", "dict"})


def _is_secret_key(key_path: KeyPath) -> bool:
    # Literal credentials live under these keys; their values must never be
    # echoed back in an error, even a type error.
    return any(isinstance(part, str) and part in SECRET_KEYS for part in key_path)


SECRET_KEYS = frozenset({"value", "secret", "password", "token", "private_key"})


def _describe(item: Mapping[str, Any], *, show_input: bool = True) -> str:
    message = str(item["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if item["type"] == "missing":
        return "required key is missing"
    received = item.get("input")
    if not show_input:
        return message
    if item["type"] not in {"value_error", "assertion_error"} and not isinstance(
        received, dict | list
    ):
        message += f" (got {received!r})"
    return message


def _suggest(word: str, candidates: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def _allowed_keys(model: type[BaseModel], location: tuple[Any, ...]) -> list[str]:
    """Return the keys valid at ``location`` inside ``model``, aliases included."""
    current: Any = model
    for part in location:
        current = _descend(current, part)
        if current is None:
            return []
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        return []
    names: list[str] = []
    for name, info in current.model_fields.items():
        names.append(name)
        choices = getattr(info.validation_alias, "choices", None)
        if choices:
            names.extend(str(choice) for choice in choices)
    return sorted(set(names))


def _descend(annotation: Any, part: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part))
        return _unwrap(info.annotation) if info else None
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        return _unwrap(typing.get_args(annotation)[-1])
    return None


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _unwrap(members[0]) if len(members) == 1 else annotation
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation
