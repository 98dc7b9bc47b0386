"""The JSON Schema of provider and hosts files, checked against real files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from outpost.auth import AUTH_TYPES
from outpost.catalogue import catalogue_files
from outpost.config.schema import (
    HOSTS_SCHEMA_FILE,
    PROVIDER_SCHEMA_FILE,
    hosts_schema,
    provider_schema,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SCHEMA_DIR = ROOT / "schema"
PROVIDER_FILES = sorted((EXAMPLES / "providers").glob("*.yaml")) + catalogue_files()
SCHEMA_COMMENT = re.compile(r"# yaml-language-server: \$schema=(\S+)")


def provider_errors(document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(provider_schema())
    return [error.message for error in validator.iter_errors(document)]


def hosts_errors(document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(hosts_schema())
    return [error.message for error in validator.iter_errors(document)]


def minimal_provider(**overrides: Any) -> dict[str, Any]:
    provider: dict[str, Any] = {
        "name": "github",
        "base_url": "https://api.github.com",
        "auth": {"type": "bearer_static", "env": "GITHUB_TOKEN"},
    }
    provider.update(overrides)
    return provider


@pytest.mark.parametrize(
    ("name", "generate"),
    [(PROVIDER_SCHEMA_FILE, provider_schema), (HOSTS_SCHEMA_FILE, hosts_schema)],
)
def test_committed_schema_is_current(name: str, generate: Any) -> None:
    committed = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))

    assert committed == generate(), (
        f"schema/{name} is out of date; run 'outpost schema --output schema' "
        "and commit the result"
    )


def test_schemas_are_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(provider_schema())
    jsonschema.Draft202012Validator.check_schema(hosts_schema())


@pytest.mark.parametrize("path", PROVIDER_FILES, ids=lambda path: path.name)
def test_schema_accepts_provider_file(path: Path) -> None:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert provider_errors(document) == []


def test_schema_accepts_hosts_example() -> None:
    document = yaml.safe_load((EXAMPLES / "hosts.yaml").read_text(encoding="utf-8"))

    assert hosts_errors(document) == []


@pytest.mark.parametrize(
    "path",
    sorted({*EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml"), *PROVIDER_FILES}),
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_file_points_at_schema(path: Path) -> None:
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    match = SCHEMA_COMMENT.fullmatch(first_line)

    assert match is not None, f"{path} must start with the schema comment"
    expected = HOSTS_SCHEMA_FILE if path.name == "hosts.yaml" else PROVIDER_SCHEMA_FILE
    target = (path.parent / match.group(1)).resolve()
    assert target == SCHEMA_DIR / expected


@pytest.mark.parametrize(
    "document",
    [
        minimal_provider(enabeld=False),
        minimal_provider(forwarding={"mode": "allowlist", "alow": []}),
        minimal_provider(forwarding={"allow": [{"path": "/x", "sensitve": True}]}),
        minimal_provider(forwarding={"rate_limits": {"x": [{"capacity": 1}]}}),
        minimal_provider(auth={"type": "bearer_static", "env": "T", "heder": "X"}),
        minimal_provider(timeouts={"connect": 1, "idle": 2}),
    ],
    ids=["top", "forwarding", "allow-rule", "rate-window", "auth", "timeouts"],
)
def test_schema_rejects_unknown_or_missing_key(document: dict[str, Any]) -> None:
    assert provider_errors(document) != []


def test_schema_rejects_unknown_host_key() -> None:
    document = {"hosts": [{"id": "a", "cidrs": ["127.0.0.1/32"], "can_cal": True}]}

    assert hosts_errors(document) != []


def test_schema_rejects_unknown_auth_type() -> None:
    assert provider_errors(minimal_provider(auth={"type": "bearer"})) != []


def test_schema_rejects_wrong_value_types() -> None:
    assert provider_errors(minimal_provider(base_url="ftp://x")) != []
    assert provider_errors(minimal_provider(name="-bad")) != []
    rule = {"path": "/x", "methods": ["FETCH"]}
    assert provider_errors(minimal_provider(forwarding={"allow": [rule]})) != []


def test_schema_has_a_branch_per_auth_type() -> None:
    schema = provider_schema()
    branches = schema["properties"]["auth"]["oneOf"]
    names = {ref["$ref"].rsplit("/", 1)[1].removeprefix("auth_") for ref in branches}

    assert names == set(AUTH_TYPES)


def test_schema_accepts_older_key_names() -> None:
    forwarding = {
        "allow": [
            "/plain",
            {"pattern": "/a", "method": "GET"},
            {"path": "/b", "method": "*"},
            {"path": "/c", "methods": ["get", "POST"]},
        ]
    }
    basic = {"type": "basic_auth", "user_env": "U", "pass_env": "P"}
    hosts = {"hosts": [{"id": "a", "cidrs": ["127.0.0.1/32"], "can_trade": True}]}

    assert provider_errors(minimal_provider(forwarding=forwarding)) == []
    assert provider_errors(minimal_provider(auth=basic)) == []
    assert hosts_errors(hosts) == []


def test_schema_rejects_method_and_methods_together() -> None:
    rule = {"path": "/a", "method": "GET", "methods": ["GET"]}

    assert provider_errors(minimal_provider(forwarding={"allow": [rule]})) != []


def test_schema_requires_auth_keys() -> None:
    assert provider_errors(minimal_provider(auth={"type": "basic_auth"})) != []
    assert provider_errors({"name": "x", "base_url": "https://x"}) != []
