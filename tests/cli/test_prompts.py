"""Answer parsers of the wizard: each accepts, converts or explains."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from outpost.cli.forwarding_form import (
    parse_category,
    parse_header_name,
    parse_header_value,
    parse_methods,
    parse_pattern,
    parse_windows,
)
from outpost.cli.prompts import (
    optional,
    parse_env_name,
    parse_int,
    parse_seconds,
    parse_with_model,
)
from outpost.config.models import ProviderFile


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (parse_seconds, " 30 ", 30),
        (parse_seconds, "0.5", 0.5),
        (parse_int(1), "7", 7),
        (parse_env_name, " GITHUB_TOKEN ", "GITHUB_TOKEN"),
        (parse_methods, "get, Post", ["GET", "POST"]),
        (parse_methods, "*", None),
        (parse_category, "non_trading", "non_trading"),
        (parse_pattern, "/v1/items/{id}", "/v1/items/{id}"),
        (parse_pattern, "/repos/**", "/repos/**"),
        (
            parse_windows,
            "10/1s, 1000/1h",
            [
                {"capacity": 10, "window_ms": 1000},
                {"capacity": 1000, "window_ms": 3_600_000},
            ],
        ),
        (
            parse_windows,
            "5/s, 3/250ms, 2/1.5m",
            [
                {"capacity": 5, "window_ms": 1000},
                {"capacity": 3, "window_ms": 250},
                {"capacity": 2, "window_ms": 90_000},
            ],
        ),
        (parse_windows, "", []),
        (parse_header_name, "Notion-Version", "Notion-Version"),
        (parse_header_value, " 2022-06-28 ", "2022-06-28"),
        (optional(parse_int(0)), "  ", None),
        (parse_with_model(ProviderFile, "name"), "GitHub", "github"),
        (
            parse_with_model(ProviderFile, "base_url"),
            "https://a.test/v1",
            "https://a.test/v1",
        ),
    ],
)
def test_parser_accepts(parse: Callable[[str], Any], text: str, expected: Any) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (parse_seconds, "abc", "'abc' is not a number of seconds"),
        (parse_seconds, "-1", "must be a finite number of seconds"),
        (parse_seconds, "nan", "must be a finite number of seconds"),
        (parse_int(1), "0", "0 is too small; enter 1 or more"),
        (parse_int(0), "1.5", "'1.5' is not a whole number"),
        (parse_env_name, "ghp_abc def", "is not a variable name"),
        (parse_env_name, "1TOKEN", "is not a variable name"),
        (parse_methods, "FETCH", "unknown HTTP method 'FETCH'"),
        (parse_methods, " , ", "enter at least one method"),
        (parse_category, "a b", "is not a category name"),
        (parse_pattern, "v1/items", "must start with '/'"),
        (parse_pattern, "/a/**/b/**", "has more than one '**'"),
        (parse_pattern, "/a/*{id}", "two wildcards without a '/'"),
        (parse_windows, "10 per second", "is not requests/window"),
        (parse_windows, "0/1s", "greater than 0"),
        (parse_windows, "10/0s", "greater than 0"),
        (parse_header_name, "Bad Header", "is not a valid HTTP header name"),
        (parse_header_name, "authorization", "carries a credential"),
        (parse_header_name, "Cookie", "carries a credential"),
        (parse_header_value, "a\r\nX-Injected: 1", "must not contain line breaks"),
        (parse_header_value, "  ", "must not be empty"),
        (parse_with_model(ProviderFile, "name"), "-x", "must match"),
        (
            parse_with_model(ProviderFile, "base_url"),
            "ftp://a.test",
            "must start with http:// or https://",
        ),
        (
            parse_with_model(ProviderFile, "base_url"),
            "https://u:p@a.test",
            "must not carry a user name or password",
        ),
    ],
)
def test_parser_explains_rejection(
    parse: Callable[[str], Any], text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(text)
