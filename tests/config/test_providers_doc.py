"""docs/providers.md names every key of the provider and hosts files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from outpost.auth import AUTH_TYPES
from outpost.config.models import (
    AllowRule,
    Forwarding,
    HostEntry,
    HostsFile,
    ProviderFile,
    RateWindow,
    Timeouts,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")
MODELS: list[type[BaseModel]] = [
    ProviderFile,
    Forwarding,
    AllowRule,
    RateWindow,
    Timeouts,
    HostsFile,
    HostEntry,
]
KEYS = sorted(
    {(model.__name__, name) for model in MODELS for name in model.model_fields}
)
AUTH_KEYS = sorted(
    {
        (type_name, name)
        for type_name, module in AUTH_TYPES.items()
        for name in module.config_model.model_fields
        if name != "type"
    }
)


def names_key(key: str) -> bool:
    """Return True if a code span starts with ``key``, maybe after ``hosts[].``."""
    pattern = r"`(?:[\w\[\]]+\.)?" + re.escape(key) + r"(?:`|:| )"
    return re.search(pattern, DOC) is not None


def test_names_key_needs_a_code_span() -> None:
    assert names_key("cidrs")
    assert not names_key("cidr")
    assert not names_key("nonexistent_key")


@pytest.mark.parametrize(("model", "key"), KEYS)
def test_providers_doc_names_key(model: str, key: str) -> None:
    assert names_key(key), f"document {model}.{key} in docs/providers.md"


@pytest.mark.parametrize("type_name", sorted(AUTH_TYPES))
def test_providers_doc_names_auth_type(type_name: str) -> None:
    assert f"`{type_name}`" in DOC, f"document auth type {type_name}"


@pytest.mark.parametrize(("type_name", "key"), AUTH_KEYS)
def test_providers_doc_names_auth_key(type_name: str, key: str) -> None:
    assert names_key(key), f"document {type_name}.{key} in docs/providers.md"
