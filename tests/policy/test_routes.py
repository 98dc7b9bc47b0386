"""Tests for route classification, the method-override check and the
sensitive gate, including a realistic broker allowlist."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from outpost.config.models import Forwarding, ProviderFile
from outpost.errors import (
    BadRequestError,
    MethodNotAllowedError,
    NoRouteError,
    PathDeniedError,
    ProxyError,
    SensitiveDeniedError,
)
from outpost.policy.routes import (
    Route,
    RoutePolicy,
    check_method_override,
    check_sensitive,
)

BROKER_FILE = Path(__file__).parents[1] / "data" / "providers" / "broker.yaml"

ALLOWLIST: dict[str, Any] = {
    "mode": "allowlist",
    "allow": [
        {"path": "/repos/*/*/issues", "methods": ["GET", "POST"]},
        {"path": "/repos/*/*/issues/*", "methods": ["GET"], "cache_ttl": 30},
        {"path": "/repos/*/*/issues/*", "methods": ["DELETE"], "sensitive": True},
        {"path": "/repos/*/*/labels", "methods": ["GET"], "category": "labels"},
        {"path": "/repos/*/*/labels", "methods": ["PATCH"], "category": "writes"},
        {"path": "/search/**", "category": "search"},
    ],
    "deny": ["/admin/**", "/repos/*/*/hooks/**", "/repos/*/*/hooks"],
}
TRANSPARENT: dict[str, Any] = {
    "mode": "transparent",
    "deny": ["/admin/**", "/repos/*/*/hooks/**"],
    "default_cache_ttl": 10,
    "default_category": "general",
    "allow": [{"path": "/v1/charges", "category": "payments"}],
}


def make_policy(forwarding: dict[str, Any]) -> RoutePolicy:
    return RoutePolicy.from_forwarding(Forwarding.model_validate(forwarding))


@dataclass(frozen=True)
class FakeCaller:
    id: str
    can_call_sensitive: bool


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        pytest.param(
            "GET",
            "/repos/a/b/issues",
            Route("default", 0, False, "/repos/*/*/issues"),
            id="allowed-get",
        ),
        pytest.param(
            "POST",
            "/repos/a/b/issues",
            Route("default", 0, False, "/repos/*/*/issues"),
            id="allowed-post",
        ),
        pytest.param(
            "GET",
            "/repos/a/b/issues/1",
            Route("default", 30, False, "/repos/*/*/issues/*"),
            id="ttl-for-get",
        ),
        pytest.param(
            "DELETE",
            "/repos/a/b/issues/1",
            Route("default", 0, True, "/repos/*/*/issues/*"),
            id="later-rule-for-other-method",
        ),
        pytest.param(
            "PATCH",
            "/repos/a/b/labels",
            Route("writes", 0, False, "/repos/*/*/labels"),
            id="category-per-method",
        ),
        pytest.param(
            "PROPFIND",
            "/search/code/x",
            Route("search", 0, False, "/search/**"),
            id="any-method-rule",
        ),
    ],
)
def test_allowlist_routes(method: str, path: str, expected: Route) -> None:
    assert make_policy(ALLOWLIST).classify(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path", "error", "reason"),
    [
        pytest.param("GET", "/admin/keys", PathDeniedError, "deny_rule", id="deny"),
        pytest.param(
            "GET",
            "/repos/a/b/hooks/1",
            PathDeniedError,
            "deny_rule",
            id="deny-before-allow",
        ),
        pytest.param(
            "PUT",
            "/repos/a/b/issues",
            MethodNotAllowedError,
            "method_not_allowed",
            id="method-not-listed",
        ),
        pytest.param(
            "get",
            "/repos/a/b/issues",
            MethodNotAllowedError,
            "method_not_allowed",
            id="method-case-sensitive",
        ),
        pytest.param(
            "HEAD",
            "/repos/a/b/issues/1",
            MethodNotAllowedError,
            "method_not_allowed",
            id="head-not-implied-by-get",
        ),
        pytest.param(
            "GET",
            "/repos/a/b/c/issues",
            NoRouteError,
            "no_rule",
            id="glob-star-crosses-slash",
        ),
        pytest.param(
            "GET",
            "/repos/a/b/issues/1/merge",
            NoRouteError,
            "no_rule",
            id="pattern-anchored-at-end",
        ),
        pytest.param(
            "GET",
            "/repos/a/b/issues/",
            NoRouteError,
            "no_rule",
            id="trailing-slash-significant",
        ),
        pytest.param("GET", "/", NoRouteError, "no_rule", id="root"),
    ],
)
def test_allowlist_refusals(
    method: str, path: str, error: type[ProxyError], reason: str
) -> None:
    with pytest.raises(error) as info:
        make_policy(ALLOWLIST).classify(method, path)
    assert info.value.reason == reason


def test_method_not_allowed_lists_methods() -> None:
    with pytest.raises(MethodNotAllowedError) as info:
        make_policy(ALLOWLIST).classify("PUT", "/repos/a/b/issues/1")
    assert ("allow", "DELETE, GET") in info.value.headers
    assert info.value.metadata == {"allow": ["DELETE", "GET"]}


def test_deny_message_hides_pattern() -> None:
    with pytest.raises(PathDeniedError) as info:
        make_policy(ALLOWLIST).classify("GET", "/repos/a/b/hooks/1")
    assert "hooks/**" not in info.value.message
    assert info.value.metadata is None


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        pytest.param("GET", "/x", Route("general", 10, False), id="get-default"),
        pytest.param("HEAD", "/x", Route("general", 10, False), id="head-default"),
        pytest.param("OPTIONS", "/x", Route("general", 0, False), id="options-safe"),
        pytest.param("POST", "/x", Route("general", 0, True), id="write-sensitive"),
        pytest.param("DELETE", "/x", Route("general", 0, True), id="delete-sensitive"),
        pytest.param("BREW", "/x", Route("general", 0, True), id="unknown-method"),
        pytest.param("get", "/x", Route("general", 0, True), id="lower-case-method"),
        pytest.param(
            "POST",
            "/v1/charges",
            Route("payments", 0, True, "/v1/charges"),
            id="rule-cannot-unlock-writes",
        ),
        pytest.param(
            "GET",
            "/v1/charges",
            Route("payments", 0, False, "/v1/charges"),
            id="rule-sets-category",
        ),
    ],
)
def test_transparent_routes(method: str, path: str, expected: Route) -> None:
    assert make_policy(TRANSPARENT).classify(method, path) == expected


def test_transparent_writes_not_sensitive_when_disabled() -> None:
    policy = make_policy({**TRANSPARENT, "treat_writes_as_sensitive": False})
    assert policy.classify("DELETE", "/x") == Route("general", 0, False)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/admin/keys", id="deny-prefix"),
        pytest.param("/repos/acme/app/hooks/42", id="deny-nested"),
    ],
)
def test_transparent_deny(path: str) -> None:
    with pytest.raises(PathDeniedError) as info:
        make_policy(TRANSPARENT).classify("DELETE", path)
    assert info.value.reason == "deny_rule"


def test_bad_pattern_fails_at_build() -> None:
    with pytest.raises(ValueError, match="'/a/\\*\\*\\*'"):
        make_policy({"deny": ["/a/***"]})


READ_ONLY: dict[str, Any] = {
    "mode": "allowlist",
    "allow": [{"path": "/repos/*/*/issues/*", "methods": ["GET"]}],
}
READ_DELETE: dict[str, Any] = {
    "mode": "allowlist",
    "allow": [
        {"path": "/repos/*/*/issues/*", "methods": ["GET"], "cache_ttl": 60},
        {"path": "/repos/*/*/issues/*", "methods": ["DELETE"], "sensitive": True},
    ],
}
ISSUE = "/repos/acme/app/issues/1"


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param([("x-http-method-override", "DELETE")], "", id="override-header"),
        pytest.param([("x-http-method", "DELETE")], "", id="http-method-header"),
        pytest.param([("x-method-override", "delete")], "", id="method-override"),
        pytest.param(
            [("x_http_method_override", "DELETE")], "", id="underscore-header"
        ),
        pytest.param([], "_method=DELETE", id="query-method"),
        pytest.param([], "a=1&_METHOD=delete", id="query-name-any-case"),
        pytest.param([], "%5Fmethod=DELETE", id="query-name-encoded"),
        pytest.param([], "x-http-method-override=DELETE", id="query-override"),
        pytest.param([], "a=1;_method=DELETE", id="query-semicolon-separator"),
        pytest.param([], ".method=DELETE", id="query-name-php-dot"),
        pytest.param([], "%20.method=DELETE", id="query-name-php-leading-space"),
        pytest.param([], "_method%00x=DELETE", id="query-name-php-nul"),
        pytest.param([], "_method[x]=DELETE", id="query-name-php-array"),
        pytest.param(
            [("x-http-method-override", "GET")],
            "_method=DELETE",
            id="conflicting-overrides",
        ),
        pytest.param([("x-http-method-override", "")], "", id="empty-override"),
        pytest.param([("x-http-method", "DE LETE")], "", id="invalid-override"),
    ],
)
def test_method_override_refused(headers: list[tuple[str, str]], query: str) -> None:
    policy = make_policy(READ_ONLY)
    route = policy.classify("GET", ISSUE)
    with pytest.raises(BadRequestError) as info:
        check_method_override(route, "GET", ISSUE, headers, query, policy)
    assert info.value.reason == "method_override"


def test_method_override_allowed_takes_stricter_route() -> None:
    policy = make_policy(READ_DELETE)
    route = policy.classify("GET", ISSUE)
    headers = [("x-http-method-override", "DELETE")]
    result = check_method_override(route, "GET", ISSUE, headers, "", policy)
    assert result == Route("default", 0, True, "/repos/*/*/issues/*")


def test_method_override_in_transparent_mode_is_sensitive() -> None:
    policy = make_policy(TRANSPARENT)
    route = policy.classify("GET", "/x")
    result = check_method_override(route, "GET", "/x", [], "_method=DELETE", policy)
    assert result == Route("general", 0, True)


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        pytest.param([], "", id="no-override"),
        pytest.param([], "method=DELETE&x=_method", id="similar-names-ignored"),
        pytest.param([("x-http-method-override", "GET")], "", id="same-method"),
    ],
)
def test_method_override_absent_keeps_route(
    headers: list[tuple[str, str]], query: str
) -> None:
    policy = make_policy(READ_ONLY)
    route = policy.classify("GET", ISSUE)
    assert check_method_override(route, "GET", ISSUE, headers, query, policy) == route


@pytest.mark.parametrize(
    ("sensitive", "can_call", "denied"),
    [
        pytest.param(True, False, True, id="sensitive-denied"),
        pytest.param(True, True, False, id="sensitive-allowed"),
        pytest.param(False, False, False, id="plain-route"),
    ],
)
def test_check_sensitive(sensitive: bool, can_call: bool, denied: bool) -> None:
    route = Route("trading", 0, sensitive)
    caller = FakeCaller("agent-1", can_call)
    if not denied:
        check_sensitive(route, caller)
        return
    with pytest.raises(SensitiveDeniedError) as info:
        check_sensitive(route, caller)
    assert info.value.reason == "sensitive_route"
    assert "'agent-1'" in info.value.message


@pytest.fixture(scope="module")
def broker() -> RoutePolicy:
    data = yaml.safe_load(BROKER_FILE.read_text())
    provider = ProviderFile.model_validate(data)
    return RoutePolicy.from_forwarding(provider.forwarding)


@pytest.mark.parametrize(
    ("method", "path", "category", "sensitive"),
    [
        pytest.param("GET", "/user/profile", "non_trading", False, id="profile"),
        pytest.param("GET", "/user/margins/equity", "non_trading", False, id="margin"),
        pytest.param("GET", "/portfolio/holdings", "non_trading", False, id="holdings"),
        pytest.param(
            "GET",
            "/portfolio/a/b/holdings",
            "non_trading",
            False,
            id="holdings-nested",
        ),
        pytest.param("PUT", "/portfolio/positions", "trading", True, id="convert"),
        pytest.param("GET", "/quote", "live_data", False, id="quote"),
        pytest.param("GET", "/quote/ltp", "live_data", False, id="quote-ltp"),
        pytest.param("GET", "/quote/INFY/depth", "live_data", False, id="depth"),
        pytest.param(
            "GET",
            "/instruments/historical/256265/minute",
            "live_data",
            False,
            id="candles",
        ),
        pytest.param("GET", "/instruments/NSE", "non_trading", False, id="instrument"),
        pytest.param("GET", "/orders", "non_trading", False, id="order-book"),
        pytest.param("GET", "/orders/1234", "non_trading", False, id="order"),
        pytest.param("POST", "/orders/regular", "trading", True, id="place-order"),
        pytest.param("PUT", "/orders/regular/1234", "trading", True, id="modify"),
        pytest.param("DELETE", "/orders/regular/1234", "trading", True, id="cancel"),
        pytest.param("POST", "/gtt/triggers", "trading", True, id="gtt-place"),
        pytest.param("DELETE", "/gtt/triggers/9", "trading", True, id="gtt-delete"),
        pytest.param("POST", "/margins/basket", "non_trading", False, id="calc"),
        pytest.param("POST", "/mf/orders", "trading", True, id="fund-order"),
    ],
)
def test_broker_routes(
    broker: RoutePolicy, method: str, path: str, category: str, sensitive: bool
) -> None:
    route = broker.classify(method, path)
    assert (route.category, route.sensitive) == (category, sensitive)


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        pytest.param("GET", "/user/apikeys", PathDeniedError, id="api-keys"),
        pytest.param("POST", "/account/7/withdrawals/new", PathDeniedError, id="wd"),
        pytest.param("GET", "/admin/users", PathDeniedError, id="admin"),
        pytest.param("POST", "/orders", MethodNotAllowedError, id="order-book-post"),
        pytest.param("PATCH", "/orders/regular/1", MethodNotAllowedError, id="patch"),
        pytest.param("GET", "/portfolio/holdings/x/y", NoRouteError, id="no-rule"),
        pytest.param("GET", "/portfolio//holdings", NoRouteError, id="empty-gap"),
        pytest.param("DELETE", "/orders/regular", MethodNotAllowedError, id="cancel"),
    ],
)
def test_broker_refusals(
    broker: RoutePolicy, method: str, path: str, error: type[ProxyError]
) -> None:
    with pytest.raises(error):
        broker.classify(method, path)


def test_broker_quote_ttl_and_order_ttl(broker: RoutePolicy) -> None:
    assert broker.classify("GET", "/quote").cache_ttl == 1
    assert broker.classify("POST", "/orders/regular").cache_ttl == 0


@pytest.mark.parametrize(
    "path", ["/admin", "/admin/", "/repos/a/b/hooks", "/repos/a/b/hooks/"]
)
def test_deny_double_star_denies_bare_prefix(path: str) -> None:
    with pytest.raises(PathDeniedError):
        make_policy(TRANSPARENT).classify("GET", path)


def test_deny_bare_prefix_stays_one_segment() -> None:
    assert make_policy(TRANSPARENT).classify("GET", "/administrator").rule is None


PARAMETERS: dict[str, Any] = {
    "mode": "transparent",
    "treat_writes_as_sensitive": False,
    "allow_path_parameters": True,
    "deny": ["/admin/**"],
    "allow": [{"path": "/payments/**", "sensitive": True}],
}


@pytest.mark.parametrize("path", ["/admin;x/keys", "/admin;/keys", "/admin;a;b/k"])
def test_path_parameters_cannot_dodge_deny(path: str) -> None:
    with pytest.raises(PathDeniedError):
        make_policy(PARAMETERS).classify("GET", path)


@pytest.mark.parametrize("path", ["/admin%3Bx/keys", "/admin%3B/keys"])
def test_encoded_semicolon_cannot_dodge_deny(path: str) -> None:
    with pytest.raises(PathDeniedError):
        make_policy(TRANSPARENT).classify("GET", path)


def test_path_parameters_keep_sensitive_rule() -> None:
    route = make_policy(PARAMETERS).classify("GET", "/payments;v=2/cards")
    assert route.sensitive
    assert route.cache_ttl == 0
