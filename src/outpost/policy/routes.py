"""Classification of a request into a route, and the gates that use it.

:class:`RoutePolicy` is built once per provider from its ``forwarding``
block. For a canonical path and a method it either returns a :class:`Route`
(category, cache TTL, sensitive flag) or raises the error that becomes the
response:

- Deny patterns are checked first, for every method, in both modes. A deny
  pattern ending in ``/**`` also denies its bare prefix: ``/admin/**`` denies
  ``/admin`` and ``/admin/``, because ``**`` needs at least one character and
  an operator who writes it means all of ``/admin``.
- ``allowlist``: the first rule whose path and method both match wins. A path
  that some rule matches under another method is a 405 with ``Allow``; a path
  no rule matches is a 404.
- ``transparent``: every path not denied is forwarded. A matching allow rule
  still sets the category and cache TTL, but can only add sensitivity: a
  write stays sensitive under ``treat_writes_as_sensitive`` whatever the rule
  says, so a rule written for a category never unlocks writes.

A path holding ``;`` (with ``allow_path_parameters``) or ``%3B`` is
classified twice: as sent, and with every ``;...`` parameter removed, which
is how servers that drop path parameters read it (a server that decodes
the path first reads ``%3B`` as ``;``). Both must pass, and the stricter
route applies, so ``/admin;x/keys`` and ``/admin%3Bx/keys`` cannot dodge a
deny pattern or a sensitive rule.

Choices where the provider file is silent: a rule listing ``GET`` does not
admit ``HEAD`` or ``OPTIONS`` (list them); a cache TTL applies to ``GET`` and
``HEAD`` only, because caching the answer to a write would replay it.

Method overrides (``X-HTTP-Method-Override`` and friends, ``_method`` in the
query) are refused unless the route admits the overridden method on the same
path; then the stricter of the two routes applies. The query is only read.
Parameter names count both as written and as PHP reads them, so that
``.method`` cannot reach a PHP upstream as ``_method`` unchecked.

This module must never reveal a deny pattern to the caller, never match the
raw path or the query, and never treat an unknown method as safe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NoReturn, Protocol
from urllib.parse import unquote_plus

from outpost.config.models import HTTP_METHODS, SAFE_METHODS, AllowRule, Forwarding
from outpost.errors import (
    BadRequestError,
    MethodNotAllowedError,
    NoRouteError,
    PathDeniedError,
    ProxyError,
    SensitiveDeniedError,
)
from outpost.policy.patterns import PatternSet, compile_patterns

CACHEABLE_METHODS: Final = frozenset({"GET", "HEAD"})
OVERRIDE_HEADERS: Final = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override"}
)
OVERRIDE_PARAMETERS: Final = frozenset({"_method", *OVERRIDE_HEADERS})
_METHOD_TOKEN: Final = re.compile(r"[A-Za-z]{1,20}")
_QUERY_SEPARATOR: Final = re.compile(r"[&;]")
_PHP_NAME_END: Final = re.compile(r"[\x00\[]")
# A canonical path writes every escape in upper case, so %3B is the only
# encoded form of ';'.
_PARAMETER_START: Final = re.compile(r";|%3B")


@dataclass(frozen=True)
class Route:
    """The outcome of classification: how a forwarded request is treated.

    ``rule`` is the allow pattern that decided, or None for the transparent
    default route.
    """

    category: str
    cache_ttl: float
    sensitive: bool
    rule: str | None = None


class SensitiveCaller(Protocol):
    """The caller fields that the sensitive gate reads."""

    @property
    def id(self) -> str: ...

    @property
    def can_call_sensitive(self) -> bool: ...


class RoutePolicy:
    """One provider's deny list and routes, compiled for fast classification."""

    def __init__(self, forwarding: Forwarding) -> None:
        self.forwarding = forwarding
        self._deny = compile_patterns(_deny_patterns(forwarding.deny))
        self._rules = tuple(forwarding.allow)
        self._all_rules = compile_patterns([rule.path for rule in self._rules])
        self._by_method = {method: self._select(method) for method in HTTP_METHODS}
        self._any_method = self._select(None)

    @classmethod
    def from_forwarding(cls, forwarding: Forwarding) -> RoutePolicy:
        """Compile ``forwarding``; raise ValueError naming a bad pattern."""
        return cls(forwarding)

    def classify(self, method: str, path: str) -> Route:
        """Return the route for ``method`` on the canonical ``path``."""
        route = self._classify_reading(method, path)
        if ";" in path or "%3B" in path:
            bare = _without_parameters(path)
            route = _stricter(route, self._classify_reading(method, bare))
        return route

    def _classify_reading(self, method: str, path: str) -> Route:
        self.check_deny(path)
        rule = self._find_rule(method, path)
        if self.forwarding.mode == "transparent":
            return self._transparent_route(method, rule)
        if rule is None:
            self._raise_no_route(path)
        return _rule_route(method, rule)

    def check_deny(self, path: str) -> None:
        """Raise PathDeniedError if ``path`` matches a deny pattern."""
        if self._deny.first_match(path) is not None:
            raise PathDeniedError(
                f"path {_show(path)} is on this provider's deny list; "
                "no method may reach it through Outpost",
                reason="deny_rule",
            )

    def _select(self, method: str | None) -> tuple[PatternSet, tuple[AllowRule, ...]]:
        # One combined regex per method, so that "first rule whose path and
        # method match" is a single search. None selects any-method rules,
        # the only ones an unlisted method can reach.
        rules = tuple(rule for rule in self._rules if _admits(rule, method))
        return compile_patterns([rule.path for rule in rules]), rules

    def _find_rule(self, method: str, path: str) -> AllowRule | None:
        patterns, rules = self._by_method.get(method, self._any_method)
        index = patterns.first_match(path)
        return None if index is None else rules[index]

    def _transparent_route(self, method: str, rule: AllowRule | None) -> Route:
        is_write = method not in SAFE_METHODS
        forced = self.forwarding.treat_writes_as_sensitive and is_write
        if rule is not None:
            route = _rule_route(method, rule)
            return Route(
                route.category, route.cache_ttl, route.sensitive or forced, route.rule
            )
        ttl = self.forwarding.default_cache_ttl if method in CACHEABLE_METHODS else 0
        return Route(self.forwarding.default_category, ttl, forced)

    def _raise_no_route(self, path: str) -> NoReturn:
        allowed = sorted(
            {
                method
                for index in self._all_rules.all_matches(path)
                for method in self._rules[index].methods or ()
            }
        )
        if allowed:
            raise MethodNotAllowedError(
                f"path {_show(path)} does not accept this method; "
                f"use one of {', '.join(allowed)}",
                reason="method_not_allowed",
                metadata={"allow": allowed},
                headers=[("allow", ", ".join(allowed))],
            )
        raise NoRouteError(
            f"path {_show(path)} matches no allow rule of this provider; "
            "ask the operator to add a rule if the call is needed",
            reason="no_rule",
        )


def check_method_override(
    route: Route,
    method: str,
    path: str,
    headers: Sequence[tuple[str, str]],
    query: str,
    policy: RoutePolicy,
) -> Route:
    """Return the route once method overrides are accounted for.

    ``route`` is ``policy.classify(method, path)``; ``headers`` have lower-case
    names. Without an override the route is returned unchanged. With one, the
    overridden method must be admitted on ``path`` too, else BadRequestError
    (reason ``method_override``); then the stricter route is returned.
    """
    overrides = _find_overrides(headers, query)
    if not overrides:
        return route
    if len(overrides) > 1:
        _reject_override("gives several different methods")

    override = overrides.pop()
    if override == method:
        return route
    try:
        other = policy.classify(override, path)
    except ProxyError as exc:
        _reject_override(f"asks for {override!r}, which this path does not accept", exc)
    return _stricter(route, other)


def check_sensitive(route: Route, caller: SensitiveCaller) -> None:
    """Raise SensitiveDeniedError if ``caller`` may not make this call."""
    if route.sensitive and not caller.can_call_sensitive:
        raise SensitiveDeniedError(
            f"this call is marked sensitive and host {caller.id!r} may not make "
            "sensitive calls; ask the operator to set can_call_sensitive: true "
            "for it",
            reason="sensitive_route",
        )


def _find_overrides(headers: Sequence[tuple[str, str]], query: str) -> set[str]:
    # CGI and WSGI servers read X_HTTP_Method as X-HTTP-Method.
    values = [
        value for name, value in headers if name.replace("_", "-") in OVERRIDE_HEADERS
    ]
    for item in _QUERY_SEPARATOR.split(query) if query else ():
        name, _, value = item.partition("=")
        if _parameter_names(name) & OVERRIDE_PARAMETERS:
            values.append(unquote_plus(value))

    methods = set()
    for value in values:
        candidate = value.strip()
        if not _METHOD_TOKEN.fullmatch(candidate):
            _reject_override("does not name an HTTP method")
        methods.add(candidate.upper())
    return methods


def _parameter_names(raw: str) -> set[str]:
    # The name as written, and as PHP reads it (php_register_variable_ex in
    # php-src main/php_variables.c): leading spaces dropped, the name cut at
    # NUL or '[', and ' ' or '.' turned into '_'. So ".method" is _method to a
    # PHP upstream and counts as an override here.
    name = unquote_plus(raw)
    php_name = _PHP_NAME_END.split(name.lstrip(" "), maxsplit=1)[0]
    php_name = php_name.replace(" ", "_").replace(".", "_")
    return {name.strip().lower(), php_name.lower()}


def _stricter(first: Route, second: Route) -> Route:
    # The upstream performs the overridden method, so its category counts.
    # The response to a tunnelled method must never be cached.
    return Route(
        category=second.category,
        cache_ttl=0,
        sensitive=first.sensitive or second.sensitive,
        rule=second.rule,
    )


def _reject_override(problem: str, cause: Exception | None = None) -> NoReturn:
    raise BadRequestError(
        f"the request carries a method override that {problem}; send the real "
        "method instead of X-HTTP-Method-Override, X-HTTP-Method, "
        "X-Method-Override or _method",
        reason="method_override",
    ) from cause


def _deny_patterns(patterns: Sequence[str]) -> list[str]:
    expanded: list[str] = []
    for pattern in patterns:
        expanded.append(pattern)
        if pattern.endswith("/**"):
            prefix = pattern[: -len("/**")]
            expanded.append(prefix + "/")
            if prefix:
                expanded.append(prefix)
    return expanded


def _without_parameters(path: str) -> str:
    return "/".join(_PARAMETER_START.split(part, 1)[0] for part in path.split("/"))


def _admits(rule: AllowRule, method: str | None) -> bool:
    return rule.methods is None or method in rule.methods


def _rule_route(method: str, rule: AllowRule) -> Route:
    ttl = rule.cache_ttl if method in CACHEABLE_METHODS else 0
    return Route(rule.category, ttl, rule.sensitive, rule.path)


def _show(path: str) -> str:
    return repr(path[:100]) + ("..." if len(path) > 100 else "")
