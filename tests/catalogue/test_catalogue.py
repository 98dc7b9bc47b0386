"""The built-in provider catalogue: every file loads, checks and is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from outpost.catalogue import (
    CATALOGUE_DIR,
    catalogue_files,
    credential_variables,
    enabled_copy,
    read_entries,
)
from outpost.cli.main import main
from outpost.config.loader import load_config
from outpost.policy.routes import RoutePolicy

VENDORS = {
    "github",
    "gitlab",
    "slack",
    "jira",
    "notion",
    "linear",
    "stripe",
    "openai",
    "anthropic",
    "gemini",
    "mistral",
    "twilio",
    "sendgrid",
    "github-allowlist",
    "stripe-allowlist",
    "tradier",
}
AUTH_DOCS = re.compile(r"^# Auth docs: https://\S+$", re.MULTILINE)


def dummy_env() -> dict[str, str]:
    """Return a value for every credential variable the catalogue names."""
    return {
        variable: "dummy-value"
        for entry in read_entries()
        for variable in entry.variables
    }


def enabled_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "providers"
    directory.mkdir()
    for path in catalogue_files():
        text = enabled_copy(path.read_text(encoding="utf-8"), "x.json")
        (directory / path.name).write_text(text, encoding="utf-8")
    return directory


def test_catalogue_has_every_vendor() -> None:
    assert {entry.name for entry in read_entries()} == VENDORS


def test_file_name_matches_provider_name() -> None:
    for entry in read_entries():
        assert entry.path.stem == entry.name


def test_every_entry_is_disabled() -> None:
    for path in catalogue_files():
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["enabled"] is False, path.name


def test_catalogue_loads_with_dummy_env() -> None:
    config = load_config([CATALOGUE_DIR], None, dummy_env())

    assert config.providers == {}


def test_enabled_copies_load_with_dummy_env(tmp_path: Path) -> None:
    config = load_config([enabled_dir(tmp_path)], None, dummy_env())

    assert set(config.providers) == VENDORS
    for definition in config.providers.values():
        assert definition.missing_env == []
        assert definition.base.scheme == "https"


def test_enabled_copies_pass_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in dummy_env().items():
        monkeypatch.setenv(name, value)

    code = main(["check", "--providers", str(enabled_dir(tmp_path))])

    assert code == 0
    assert f"ok: {len(VENDORS)} provider(s)" in capsys.readouterr().out


def test_enabled_copy_without_variable_fails_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    directory = tmp_path / "providers"
    directory.mkdir()
    source = next(path for path in catalogue_files() if path.stem == "gemini")
    text = enabled_copy(source.read_text(encoding="utf-8"), "x.json")
    (directory / "gemini.yaml").write_text(text, encoding="utf-8")

    code = main(["check", "--providers", str(directory)])

    assert code == 2
    assert "GEMINI_API_KEY is not set" in capsys.readouterr().err


@pytest.mark.parametrize("path", catalogue_files(), ids=lambda path: path.stem)
def test_file_documents_variable_and_auth_docs(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))

    assert AUTH_DOCS.search(text), "link the vendor's auth docs in a comment"
    for variable in credential_variables(document["auth"]):
        assert variable in comments, f"document {variable} in a comment"


def test_enabled_copy_keeps_comments_and_flips_enabled() -> None:
    source = catalogue_files()[0].read_text(encoding="utf-8")

    copy = enabled_copy(source, "../schema/provider.schema.json")

    assert copy.splitlines()[0] == (
        "# yaml-language-server: $schema=../schema/provider.schema.json"
    )
    assert "\nenabled: true\n" in copy
    assert "enabled: false" not in copy
    assert copy.count("\n#") == source.count("\n#")


@pytest.mark.parametrize(
    ("name", "auth"),
    [
        ("gemini", {"type": "api_key_header", "header": "x-goog-api-key"}),
        ("anthropic", {"type": "api_key_header", "header": "x-api-key"}),
        ("gitlab", {"type": "api_key_header", "header": "PRIVATE-TOKEN"}),
        ("linear", {"type": "bearer_static", "prefix": ""}),
        ("twilio", {"type": "basic_auth", "username_env": "TWILIO_ACCOUNT_SID"}),
        ("sendgrid", {"type": "bearer_static"}),
        ("notion", {"type": "bearer_static"}),
    ],
)
def test_vendor_auth_scheme(name: str, auth: dict[str, str]) -> None:
    path = next(path for path in catalogue_files() if path.stem == name)
    document = yaml.safe_load(path.read_text(encoding="utf-8"))

    for key, value in auth.items():
        assert document["auth"][key] == value


def test_notion_sends_version_header() -> None:
    path = next(path for path in catalogue_files() if path.stem == "notion")
    document = yaml.safe_load(path.read_text(encoding="utf-8"))

    assert "Notion-Version" in document["default_headers"]


@pytest.mark.parametrize(
    ("name", "method", "path", "sensitive"),
    [
        ("github-allowlist", "GET", "/repos/acme/app/pulls", False),
        ("github-allowlist", "POST", "/repos/acme/app/issues/1/comments", False),
        ("github-allowlist", "PUT", "/repos/acme/app/pulls/7/merge", True),
        ("github-allowlist", "PUT", "/repos/acme/app/contents/src/a.py", True),
        ("github-allowlist", "DELETE", "/repos/acme/app", True),
        ("stripe-allowlist", "GET", "/v1/customers/cus_1", False),
        ("stripe-allowlist", "POST", "/v1/refunds", True),
        ("stripe-allowlist", "POST", "/v1/payouts", True),
        ("stripe-allowlist", "POST", "/v1/payment_intents/pi_1/confirm", True),
        ("tradier", "GET", "/accounts/VA1/positions", False),
        ("tradier", "GET", "/markets/quotes", False),
        ("tradier", "POST", "/accounts/VA1/orders", True),
        ("tradier", "PUT", "/accounts/VA1/orders/42", True),
        ("tradier", "DELETE", "/accounts/VA1/orders/42", True),
    ],
)
def test_allowlist_marks_dangerous_calls_sensitive(
    tmp_path: Path, name: str, method: str, path: str, sensitive: bool
) -> None:
    config = load_config([enabled_dir(tmp_path)], None, dummy_env())
    policy = RoutePolicy.from_forwarding(config.providers[name].spec.forwarding)

    assert policy.classify(method, path).sensitive is sensitive


def test_tradier_separates_categories(tmp_path: Path) -> None:
    config = load_config([enabled_dir(tmp_path)], None, dummy_env())
    policy = RoutePolicy.from_forwarding(config.providers["tradier"].spec.forwarding)

    assert policy.classify("GET", "/accounts/VA1/balances").category == "account"
    assert policy.classify("GET", "/markets/quotes").category == "quotes"
    assert policy.classify("POST", "/accounts/VA1/orders").category == "trading"


def test_providers_catalogue_lists_every_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["providers", "--catalogue"])

    output = capsys.readouterr().out
    assert code == 0
    listed = {line.split()[0] for line in output.splitlines()[: len(VENDORS)]}
    assert listed == VENDORS
    assert "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN" in output
    assert "outpost init DIR --catalogue NAME" in output
