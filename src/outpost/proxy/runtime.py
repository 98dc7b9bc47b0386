"""The serving state built from a loaded configuration.

A :class:`Runtime` is immutable once built. Reloading builds a new one and
swaps a single reference, so a request sees either the old configuration or
the new one, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from outpost.auth.base import AuthModule
from outpost.config.loader import LoadedConfig, ProviderDefinition
from outpost.config.settings import Settings
from outpost.config.urls import BaseUrl
from outpost.policy.callers import HostPolicy
from outpost.policy.routes import RoutePolicy
from outpost.proxy.http1 import Http1Transport
from outpost.proxy.state import (
    IdempotencyGuard,
    RateLimiter,
    ResponseCache,
    StoreHealth,
)
from outpost.proxy.transport import Transport
from outpost.store.base import Store, Window

METHOD_OVERRIDE_HEADERS = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override"}
)


@dataclass
class ProviderRuntime:
    """One provider, ready to serve: compiled policy, auth, pooled client."""

    name: str
    base: BaseUrl
    mode: str
    routes: RoutePolicy
    auth: AuthModule | None
    transport: Transport
    default_headers: list[tuple[str, str]]
    stripped_response_headers: frozenset[str]
    dropped_request_headers: frozenset[str]
    allow_path_parameters: bool
    rate_windows: dict[str, tuple[Window, ...]]
    missing_env: list[str] = field(default_factory=list)

    def windows_for(self, category: str) -> tuple[Window, ...]:
        """Return the category's windows, else the default ones, else none."""
        windows = self.rate_windows.get(category)
        if windows is None:
            windows = self.rate_windows.get("default", ())
        return windows

    @classmethod
    def build(cls, definition: ProviderDefinition) -> ProviderRuntime:
        """Compile one provider definition."""
        spec = definition.spec
        auth = definition.auth
        injected = auth.injected_headers if auth else frozenset()
        return cls(
            name=spec.name,
            base=definition.base,
            mode=spec.forwarding.mode,
            routes=RoutePolicy.from_forwarding(spec.forwarding),
            auth=auth,
            transport=Http1Transport(definition.base, spec.timeouts),
            default_headers=[
                (name.lower(), value) for name, value in spec.default_headers.items()
            ],
            stripped_response_headers=frozenset(
                name.lower() for name in spec.strip_response_headers
            ),
            dropped_request_headers=injected | METHOD_OVERRIDE_HEADERS,
            allow_path_parameters=spec.forwarding.allow_path_parameters,
            rate_windows={
                category: tuple(
                    Window(capacity=window.capacity, window_ms=window.window_ms)
                    for window in windows
                )
                for category, windows in spec.forwarding.rate_limits.items()
            },
            missing_env=list(definition.missing_env),
        )


@dataclass
class Runtime:
    """Providers and caller policy for one configuration generation."""

    settings: Settings
    providers: dict[str, ProviderRuntime]
    hosts: HostPolicy
    default_provider: str | None
    store: Store
    health: StoreHealth
    limiter: RateLimiter
    cache: ResponseCache
    idempotency: IdempotencyGuard

    @classmethod
    def build(cls, settings: Settings, config: LoadedConfig, store: Store) -> Runtime:
        """Compile a loaded configuration into serving state over ``store``."""
        providers = {
            name: ProviderRuntime.build(definition)
            for name, definition in config.providers.items()
        }
        hosts = HostPolicy(config.hosts, config.host_keys, settings.trusted_proxies)
        default = (
            settings.default_provider.lower() if settings.default_provider else None
        )
        health = StoreHealth(store)
        return cls(
            settings=settings,
            providers=providers,
            hosts=hosts,
            default_provider=default,
            store=store,
            health=health,
            limiter=RateLimiter(health, settings.rate_limit_queue_timeout),
            cache=ResponseCache(health),
            idempotency=IdempotencyGuard(health),
        )

    async def close(self) -> None:
        """Close every provider's pooled connections and auth clients.

        The store outlives a configuration generation and is closed by the
        application on shutdown.
        """
        for provider in self.providers.values():
            await provider.transport.close()
            if provider.auth is not None:
                await provider.auth.close()
