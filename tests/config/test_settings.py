"""Settings from flags, OUTPOST_* variables, older variable names and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost.cli.main import build_parser, resolve_settings
from outpost.config.settings import Settings, settings_from_env


def test_defaults() -> None:
    settings = settings_from_env({})

    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.workers == 1
    assert settings.provider_dirs == [Path("providers")]
    assert settings.hosts_file is None
    assert settings.rate_limit_queue_timeout == 2.0


def test_outpost_variables_win_over_older_names() -> None:
    env = {
        "OUTPOST_PORT": "9000",
        "PROXY_PORT": "7000",
        "OUTPOST_STORE": "redis://127.0.0.1:1/0",
        "REDIS_URL": "redis://127.0.0.1:2/0",
    }

    settings = settings_from_env(env)

    assert settings.port == 9000
    assert settings.store_url == "redis://127.0.0.1:1/0"


def test_older_names_accepted() -> None:
    env = {
        "PROVIDERS_DIR": "/etc/outpost/providers",
        "EXTRA_PROVIDERS_DIR": "/etc/outpost/extra",
        "HOSTS_CONFIG_PATH": "/etc/outpost/hosts.yaml",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "TRUSTED_PROXIES": "10.0.0.1/32, 10.0.0.2/32",
        "DEFAULT_PROVIDER": "github",
        "RATE_LIMIT_QUEUE_TIMEOUT": "0.5",
        "PROXY_PORT": "8181",
    }

    settings = settings_from_env(env)

    assert settings.provider_dirs == [
        Path("/etc/outpost/providers"),
        Path("/etc/outpost/extra"),
    ]
    assert settings.hosts_file == Path("/etc/outpost/hosts.yaml")
    assert settings.store_url == "redis://127.0.0.1:6379/0"
    assert settings.trusted_proxies == ["10.0.0.1/32", "10.0.0.2/32"]
    assert settings.default_provider == "github"
    assert settings.rate_limit_queue_timeout == 0.5
    assert settings.port == 8181


def test_provider_dirs_split_on_colon() -> None:
    settings = settings_from_env({"OUTPOST_PROVIDERS": "a:b::c"})

    assert settings.provider_dirs == [Path("a"), Path("b"), Path("c")]


def test_bad_number_names_variable() -> None:
    with pytest.raises(ValueError, match="OUTPOST_PORT='eighty'"):
        settings_from_env({"OUTPOST_PORT": "eighty"})


@pytest.mark.parametrize("value", ["not-a-cidr", "10.0.0.0/8, 127.0.0.1/8"])
def test_bad_trusted_proxy_names_variable(value: str) -> None:
    with pytest.raises(ValueError, match=r"^OUTPOST_TRUSTED_PROXIES: ") as caught:
        settings_from_env({"OUTPOST_TRUSTED_PROXIES": value})

    assert "CIDR" in str(caught.value)


def test_bad_trusted_proxy_flag_named() -> None:
    args = build_parser().parse_args(["serve", "--trusted-proxies", "10.0.0.0/33"])

    with pytest.raises(ValueError, match=r"^--trusted-proxies: invalid CIDR"):
        resolve_settings(args)


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPOST_PORT", "9000")
    monkeypatch.setenv("OUTPOST_PROVIDERS", "from-env")
    args = build_parser().parse_args(
        ["serve", "--port", "9100", "--providers", "a", "--providers", "b"]
    )

    settings = resolve_settings(args)

    assert settings.port == 9100
    assert settings.provider_dirs == [Path("a"), Path("b")]


def test_json_round_trip() -> None:
    settings = Settings(hosts_file=Path("h.yaml"), trusted_proxies=["10.0.0.0/8"])

    assert Settings.from_json(settings.to_json()) == settings
