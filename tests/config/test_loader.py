"""Loading provider directories and hosts files, and the errors it reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost.config.loader import load_config
from outpost.config.source import ConfigErrors

GOOD = """\
name: github
base_url: https://api.github.com
auth: {type: bearer_static, env: GITHUB_TOKEN}
"""
ENV = {"GITHUB_TOKEN": "ghp_test", "OTHER_TOKEN": "other"}


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def errors_of(dirs: list[Path], hosts: Path | None = None, **env: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load_config(dirs, hosts, {**ENV, **env})
    return [str(error) for error in caught.value.errors]


def test_three_line_provider_loads(tmp_path: Path) -> None:
    write(tmp_path, "github.yaml", GOOD)

    config = load_config([tmp_path], None, ENV)

    provider = config.providers["github"]
    assert provider.base.origin == "https://api.github.com"
    assert provider.spec.forwarding.mode == "transparent"
    assert config.warnings


def test_misspelt_key_located_with_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "github.yaml", GOOD + "forwardng:\n  mode: allowlist\n")

    [error] = errors_of([tmp_path])

    assert error.startswith(f"{path}:4:1: forwardng: unknown key 'forwardng'")
    assert "did you mean 'forwarding'?" in error


def test_nested_error_names_key_path(tmp_path: Path) -> None:
    text = GOOD + "forwarding:\n  allow:\n    - {path: /a, categry: c}\n"
    write(tmp_path, "github.yaml", text)

    [error] = errors_of([tmp_path])

    assert ":6:" in error
    assert "forwarding.allow[0].categry" in error
    assert "did you mean 'category'?" in error


def test_unknown_auth_type_suggests(tmp_path: Path) -> None:
    text = GOOD.replace("bearer_static", "bearer_statik")
    write(tmp_path, "github.yaml", text)

    [error] = errors_of([tmp_path])

    assert "auth.type" in error
    assert "did you mean 'bearer_static'?" in error


def test_every_error_reported_together(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD.replace("github", "a") + "extra: 1\n")
    write(tmp_path, "b.yaml", GOOD.replace("github", "b").replace("https", "ftp"))

    errors = errors_of([tmp_path])

    assert len(errors) == 2


def test_duplicate_yaml_key_rejected(tmp_path: Path) -> None:
    write(tmp_path, "github.yaml", GOOD + "name: other\n")

    [error] = errors_of([tmp_path])

    assert "duplicate key 'name'" in error


def test_same_name_twice_in_one_directory(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yml", GOOD)

    [error] = errors_of([tmp_path])

    assert "also defined in" in error


def test_later_directory_overrides_and_disables(tmp_path: Path) -> None:
    write(tmp_path / "base", "github.yaml", GOOD)
    write(tmp_path / "base", "other.yaml", GOOD.replace("github", "other", 1))
    write(tmp_path / "extra", "gh.yaml", GOOD.replace("api.github.com", "ghe.test"))
    write(
        tmp_path / "extra",
        "off.yaml",
        GOOD.replace("github", "other", 1) + "enabled: false\n",
    )

    config = load_config([tmp_path / "base", tmp_path / "extra"], None, ENV)

    assert config.providers["github"].base.host == "ghe.test"
    assert "other" not in config.providers


def test_missing_credential_stops_startup(tmp_path: Path) -> None:
    write(tmp_path, "github.yaml", GOOD)

    [error] = errors_of([tmp_path], GITHUB_TOKEN="")

    assert "GITHUB_TOKEN is not set" in error
    assert "--allow-missing-credentials" in error


def test_missing_credential_allowed_when_asked(tmp_path: Path) -> None:
    write(tmp_path, "github.yaml", GOOD)

    config = load_config([tmp_path], None, {}, allow_missing_credentials=True)

    assert config.providers["github"].missing_env == ["GITHUB_TOKEN"]


def test_literal_secret_never_echoed(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{type: bearer_static, env: GITHUB_TOKEN}",
        "{type: bearer_static, value: [tok_outpost_TEST_9f3a]}",
    )
    write(tmp_path, "github.yaml", text)

    [error] = errors_of([tmp_path])

    assert "auth.value" in error
    assert "tok_outpost_TEST_9f3a" not in error


def test_literal_secret_masked_in_model_repr(tmp_path: Path) -> None:
    text = GOOD.replace("env: GITHUB_TOKEN", "value: tok_outpost_TEST_9f3a")
    write(tmp_path, "github.yaml", text)

    config = load_config([tmp_path], None, {})

    provider = config.providers["github"]
    assert "tok_outpost_TEST_9f3a" not in repr(provider)
    assert "tok_outpost_TEST_9f3a" not in repr(provider.auth_config)


def test_hosts_psk_variable_must_be_set(tmp_path: Path) -> None:
    write(tmp_path / "p", "github.yaml", GOOD)
    hosts = write(
        tmp_path,
        "hosts.yaml",
        "hosts:\n  - id: agent\n    cidrs: [127.0.0.1/32]\n"
        "    auth_token_env: AGENT_KEY\n",
    )

    [error] = errors_of([tmp_path / "p"], hosts)

    assert f"{hosts}:4:5" in error
    assert "AGENT_KEY is unset or empty" in error


def test_hosts_unknown_provider_suggests(tmp_path: Path) -> None:
    write(tmp_path / "p", "github.yaml", GOOD)
    hosts = write(
        tmp_path,
        "hosts.yaml",
        "hosts:\n  - id: agent\n    cidrs: [127.0.0.1/32]\n    providers: [githib]\n",
    )

    [error] = errors_of([tmp_path / "p"], hosts)

    assert "unknown provider 'githib'; did you mean 'github'?" in error


def test_compat_aliases_load(tmp_path: Path) -> None:
    text = GOOD + (
        "forwarding:\n  mode: allowlist\n  allow:\n"
        "    - {pattern: /user, method: GET}\n    - {pattern: '/x/*', method: '*'}\n"
    )
    write(tmp_path / "p", "github.yaml", text)
    hosts = write(
        tmp_path,
        "hosts.yaml",
        "hosts:\n  - id: agent\n    cidrs: [127.0.0.1/32]\n    can_trade: true\n",
    )

    config = load_config([tmp_path / "p"], hosts, ENV)

    rules = config.providers["github"].spec.forwarding.allow
    assert rules[0].path == "/user"
    assert rules[0].methods == ["GET"]
    assert rules[1].methods is None
    assert config.hosts is not None
    assert config.hosts.hosts[0].can_call_sensitive is True


def test_mapped_ipv6_cidr_normalised(tmp_path: Path) -> None:
    write(tmp_path / "p", "github.yaml", GOOD)
    hosts = write(
        tmp_path,
        "hosts.yaml",
        "hosts:\n  - id: agent\n    cidrs: ['::ffff:10.0.0.0/104']\n",
    )

    config = load_config([tmp_path / "p"], hosts, ENV)

    from outpost.config.urls import parse_cidr

    assert config.hosts is not None
    assert str(parse_cidr(config.hosts.hosts[0].cidrs[0])) == "10.0.0.0/8"


@pytest.mark.parametrize(
    "auth",
    [
        '{type: bearer_static, env: ""}',
        "{type: bearer_static, env: MY TOKEN}",
        "{type: api_key_header, header: X-Key, env: sk-tok_outpost_TEST_9f3a}",
        "{type: basic_auth, username_env: USER, password_env: '1PASS'}",
        "{type: bearer_store, key: k, env_seed: 'SEED-VAR'}",
    ],
    ids=["empty", "space", "dash", "leading-digit", "seed"],
)
def test_variable_name_must_be_valid(tmp_path: Path, auth: str) -> None:
    text = GOOD.replace("{type: bearer_static, env: GITHUB_TOKEN}", auth)
    write(tmp_path, "github.yaml", text)

    [error] = errors_of([tmp_path], USER="u")

    assert ":3:" in error
    assert "must be an environment variable name" in error
    assert "tok_outpost_TEST_9f3a" not in error


def test_cidr_with_host_bits_rejected(tmp_path: Path) -> None:
    write(tmp_path / "p", "github.yaml", GOOD)
    hosts = write(
        tmp_path, "hosts.yaml", "hosts:\n  - id: a\n    cidrs: [10.0.0.7/8]\n"
    )

    [error] = errors_of([tmp_path / "p"], hosts)

    assert "hosts[0].cidrs" in error
    assert "write 10.0.0.0/8 for the whole network" in error
    assert "10.0.0.7/32 for one address" in error
