"""Wizard questions for forwarding rules, rate limits and default headers.

Patterns are checked with the same compiler the proxy uses, so a pattern the
wizard accepts never fails when the server starts.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from outpost.cli.prompts import (
    HEADER_NAME,
    ask_choice,
    ask_confirm,
    ask_parsed,
    clean_message,
    optional,
    parse_seconds,
)
from outpost.config.models import SAFE_METHODS, AllowRule, RateWindow
from outpost.policy.patterns import compile_pattern

CATEGORY = re.compile(r"[A-Za-z0-9_.-]+")
WINDOW = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h)\s*")
UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key"}
)


def ask_forwarding() -> dict[str, Any]:
    """Ask for the mode, rules, deny patterns and rate limits."""
    mode = ask_choice(
        "Forwarding mode",
        [
            ("allowlist", "allowlist", "forward only the paths you list (safest)"),
            ("transparent", "transparent", "forward every path that is not denied"),
        ],
    )
    forwarding: dict[str, Any] = {"mode": mode}
    if mode == "transparent":
        forwarding.update(_ask_transparent_defaults())

    rules = _ask_rules(mode)
    deny = _ask_deny()
    if deny:
        forwarding["deny"] = deny
    if rules:
        forwarding["allow"] = rules

    categories = [str(rule.get("category", "default")) for rule in rules]
    limits = _ask_rate_limits(categories)
    if limits is not None:
        forwarding["rate_limits"] = limits
    return forwarding


def ask_default_headers() -> dict[str, str]:
    """Ask for headers sent on every request; credential headers are rejected."""
    headers: dict[str, str] = {}
    while True:
        name = ask_parsed(
            "Default header sent upstream on every request, e.g. Accept "
            "(Enter to finish)",
            optional(parse_header_name),
        )
        if name is None:
            return headers
        headers[name] = ask_parsed(f"Value of {name}", parse_header_value)


def parse_pattern(text: str) -> str:
    """Parse a path pattern with the proxy's own pattern compiler."""
    pattern = text.strip()
    try:
        AllowRule.model_validate({"path": pattern})
    except ValidationError as exc:
        raise ValueError(clean_message(exc.errors()[0]["msg"])) from None
    compile_pattern(pattern)
    return pattern


def parse_methods(text: str) -> list[str] | None:
    """Parse ``GET, POST`` into a method list; ``*`` means any (None)."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise ValueError("enter at least one method, such as GET, or * for any")
    try:
        rule = AllowRule.model_validate({"path": "/", "methods": items})
    except ValidationError as exc:
        raise ValueError(clean_message(exc.errors()[0]["msg"])) from None
    return rule.methods


def parse_category(text: str) -> str:
    """Parse a rate-limit category name such as ``read``."""
    name = text.strip()
    if not CATEGORY.fullmatch(name):
        raise ValueError(
            f"{text!r} is not a category name; use letters, digits, '_', '.' or '-'"
        )
    return name


def parse_windows(text: str) -> list[dict[str, int]]:
    """Parse ``10/1s, 1000/1h`` into rate windows; empty means none."""
    windows = []
    for item in (part for part in text.split(",") if part.strip()):
        match = WINDOW.fullmatch(item)
        if match is None:
            raise ValueError(
                f"{item.strip()!r} is not requests/window; write e.g. 10/1s, "
                "100/30s, 1000/1h (units ms, s, m, h)"
            )
        count, length, unit = match.groups()
        window_ms = round(float(length or 1) * UNIT_MS[unit])
        try:
            window = RateWindow(capacity=int(count), window_ms=window_ms)
        except ValidationError as exc:
            problem = clean_message(exc.errors()[0]["msg"])
            raise ValueError(f"{item.strip()!r}: {problem}") from None
        windows.append(window.model_dump())
    return windows


def parse_header_name(text: str) -> str:
    """Parse a header name; credential headers belong in the auth block."""
    name = text.strip()
    if not HEADER_NAME.fullmatch(name):
        raise ValueError(f"{text!r} is not a valid HTTP header name")
    if name.lower() in CREDENTIAL_HEADERS:
        raise ValueError(
            f"{name} carries a credential; the auth section injects it from an "
            "environment variable instead"
        )
    return name


def parse_header_value(text: str) -> str:
    """Parse a header value: visible text without line breaks."""
    if any(char in text for char in "\r\n\0"):
        raise ValueError("a header value must not contain line breaks")
    if not text.strip():
        raise ValueError("a header value must not be empty")
    return text.strip()


def _ask_transparent_defaults() -> dict[str, Any]:
    values: dict[str, Any] = {}
    if not ask_confirm(
        "Treat every write (POST, PUT, PATCH, DELETE) as sensitive?", True
    ):
        values["treat_writes_as_sensitive"] = False
    ttl = ask_parsed(
        "Cache TTL in seconds for GET answers (0 = no cache)", parse_seconds, "0"
    )
    if ttl:
        values["default_cache_ttl"] = ttl
    return values


def _ask_rules(mode: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    purpose = "forward" if mode == "allowlist" else "classify"
    while True:
        needed = mode == "allowlist" and not rules
        finish = "at least one" if needed else "Enter to finish"
        path = ask_parsed(
            f"Path pattern of a rule to {purpose}, e.g. /v1/items/{{id}} ({finish})",
            parse_pattern if needed else optional(parse_pattern),
        )
        if path is None:
            return rules
        rules.append(_ask_rule(path))


def _ask_rule(path: str) -> dict[str, Any]:
    methods = ask_parsed(
        f"Methods for {path}, comma-separated (* for any)", parse_methods, "GET"
    )
    writes = methods is None or any(m not in SAFE_METHODS for m in methods)
    category = ask_parsed(
        "Rate-limit category", parse_category, "write" if writes else "read"
    )
    sensitive = ask_confirm(
        "Sensitive? (only hosts with can_call_sensitive may make this call)", writes
    )
    rule: dict[str, Any] = {"path": path}
    if methods is not None:
        rule["methods"] = methods
    rule["category"] = category
    if methods is None or {"GET", "HEAD"} & set(methods):
        ttl = ask_parsed(
            "Cache TTL in seconds for 2xx GET answers (0 = no cache)",
            parse_seconds,
            "0",
        )
        if ttl:
            rule["cache_ttl"] = ttl
    if sensitive:
        rule["sensitive"] = True
    return rule


def _ask_deny() -> list[str]:
    patterns: list[str] = []
    while True:
        pattern = ask_parsed(
            "Deny pattern, rejected for every method, e.g. /admin/** (Enter to finish)",
            optional(parse_pattern),
        )
        if pattern is None:
            return patterns
        patterns.append(pattern)


def _ask_rate_limits(categories: list[str]) -> dict[str, Any] | None:
    if ask_confirm(
        "Keep the default rate limit (50 per second and 500 per minute)?", True
    ):
        return None
    limits: dict[str, Any] = {}
    for category in dict.fromkeys([*categories, "default"]):
        fallback = "no limit" if category == "default" else "use 'default'"
        windows = ask_parsed(
            f"Rate limit for category {category!r} as requests/window, "
            f"e.g. 10/1s, 1000/1h (Enter: {fallback})",
            parse_windows,
        )
        if windows:
            limits[category] = windows
    return limits
