"""``plugin``: an auth scheme implemented by any importable Python class.

``module: package.module:Class`` names the class; ``config: {...}`` is
validated by that class's own ``config_model`` and passed to its
constructor. The class must be a subclass of
:class:`~outpost.auth.base.AuthModule` (duck typing is not accepted, so the
defaults for ``is_rejected``, ``invalidate`` and ``close`` always exist and
mypy can check plugins). Everything is resolved while the configuration
loads, so a wrong module path, a missing class, a class that does not fit or
invalid plugin settings stop ``outpost serve`` and fail ``outpost check``,
each with a message that names the module.

Importing runs the module's code with Outpost's privileges: only name
modules you trust, as you would for any installed package.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from outpost.auth.base import (
    AppliedCredential,
    AuthConfig,
    AuthContext,
    AuthModule,
    register,
)
from outpost.http import OutgoingRequest


class PluginConfig(AuthConfig):
    """``plugin``: the class to load and its own settings."""

    type: Literal["plugin"]
    module: str
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("module")
    @classmethod
    def _check_module(cls, value: str) -> str:
        load_plugin_class(value)
        return value

    @model_validator(mode="after")
    def _check_plugin_config(self) -> Self:
        plugin_config(self)
        return self


def load_plugin_class(spec: str) -> type[AuthModule]:
    """Import ``package.module:Class`` and check that it is an auth module.

    Raises ValueError naming the module and what to fix.
    """
    module_name, sep, class_name = spec.partition(":")
    if not sep or not module_name or not class_name or ":" in class_name:
        raise ValueError(
            f"plugin module {spec!r} must look like 'package.module:ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"plugin module {module_name!r} cannot be imported ({exc}); install "
            "the package that provides it or fix the module path"
        ) from None
    except Exception as exc:
        raise ValueError(
            f"plugin module {module_name!r} failed while importing "
            f"({type(exc).__name__}: {exc})"
        ) from None

    found = getattr(module, class_name, None)
    if found is None:
        raise ValueError(
            f"plugin module {module_name!r} has no class {class_name!r}; check "
            "the name after ':'"
        )
    return check_plugin_class(spec, found)


def check_plugin_class(spec: str, found: object) -> type[AuthModule]:
    """Return ``found`` if it is a concrete AuthModule subclass, else raise."""
    if not isinstance(found, type) or not issubclass(found, AuthModule):
        raise ValueError(
            f"plugin {spec!r} is not a subclass of outpost.auth.base.AuthModule; "
            "subclass it and implement 'async def apply(request, context)'"
        )
    if inspect.isabstract(found):
        missing = ", ".join(sorted(found.__abstractmethods__))
        raise ValueError(f"plugin {spec!r} does not implement {missing}")
    if not inspect.iscoroutinefunction(found.apply):
        raise ValueError(f"plugin {spec!r} must define apply with 'async def'")
    config_model = getattr(found, "config_model", None)
    if not isinstance(config_model, type) or not issubclass(config_model, AuthConfig):
        raise ValueError(
            f"plugin {spec!r} has a config_model that is not a subclass of "
            "outpost.auth.base.AuthConfig"
        )
    return found


def plugin_config(config: PluginConfig) -> AuthConfig:
    """Validate the ``config`` block with the plugin's own model."""
    plugin_class = load_plugin_class(config.module)
    data = {"invalidate_on": config.invalidate_on, **config.config, "type": "plugin"}
    try:
        return plugin_class.config_model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"config.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ValueError(
            f"invalid settings for plugin {config.module!r}: {problems}"
        ) from None


@register
class PluginAuth(AuthModule):
    """Loads the plugin class and hands every call to one instance of it."""

    type_name = "plugin"
    config_model = PluginConfig

    def __init__(self, config: AuthConfig, env: Mapping[str, str]) -> None:
        super().__init__(config, env)
        assert isinstance(config, PluginConfig)
        plugin_class = load_plugin_class(config.module)
        self.plugin = plugin_class(plugin_config(config), env)
        self.injected_headers = frozenset(
            name.lower() for name in self.plugin.injected_headers
        )
        self.injected_query_params = frozenset(self.plugin.injected_query_params)
        self.signs_body = self.plugin.signs_body
        self.invalidate_on = self.plugin.invalidate_on

    async def apply(
        self, request: OutgoingRequest, context: AuthContext
    ) -> AppliedCredential | None:
        return await self.plugin.apply(request, context)

    async def is_rejected(
        self, status: int, body: bytes | None, applied: AppliedCredential | None
    ) -> bool:
        return await self.plugin.is_rejected(status, body, applied)

    async def invalidate(
        self, applied: AppliedCredential | None, context: AuthContext
    ) -> None:
        await self.plugin.invalidate(applied, context)

    def wants_response_body(self, status: int) -> bool:
        return self.plugin.wants_response_body(status)

    async def close(self) -> None:
        await self.plugin.close()
