"""Auth questions derived from each registered scheme's config model.

A scripted terminal replaces questionary here; the real prompts are
covered through a pseudo-terminal in test_wizard.py. What these tests prove
is that every registered scheme, including ones added later, can be
configured by the wizard and that it never asks for a secret value.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from rich.console import Console

from outpost.auth import AUTH_TYPES
from outpost.cli import authform
from outpost.config.loader import load_config

# Answers by field name; a list is answered item by item.
SAMPLES: dict[str, Any] = {
    "header": "X-Api-Key",
    "param": "api_key",
    "token_url": "https://auth.test/token",
    "module": "outpost.plugins.totp:TotpTokenAuth",
    "config": (
        "{mint_url: 'https://auth.test/login', user_env: SHOP_USER, "
        "password_env: SHOP_PASSWORD, totp_secret_env: SHOP_TOTP}"
    ),
    "app_id": "12345",
    "installation_id": "678",
    "signature_header": "X-Signature",
    "timestamp_header": "X-Timestamp",
    "headers": ["X-One", ""],
    "key": "shop-token",
    "key_header": "X-Key",
}
# Optional fields left empty, so that exactly one of two alternatives is set.
LEFT_EMPTY = {"signature_param", "timestamp_param", "private_key_file"}
MAX_QUESTIONS = 60


class ScriptedTerminal:
    """Answers wizard questions from SAMPLES and records every question."""

    def __init__(self, change_optional: bool) -> None:
        self.change_optional = change_optional
        self.questions: list[str] = []
        self.queues: dict[str, list[str]] = {
            key: list(value)
            for key, value in SAMPLES.items()
            if isinstance(value, list)
        }

    def answer_for(self, message: str, default: str) -> str:
        field = message.split(" ")[0].rstrip(":")
        self.questions.append(message)
        if len(self.questions) > MAX_QUESTIONS:
            raise AssertionError(f"the wizard keeps asking: {self.questions[-5:]}")
        if field in self.queues:
            return self.queues[field].pop(0)
        if field in LEFT_EMPTY:
            return ""
        if field in SAMPLES:
            return str(SAMPLES[field])
        if "variable NAME" in message:
            return default or f"SHOP_{field.upper()}"
        return default or "x"

    def parsed(
        self, message: str, parse: Callable[[str], Any], default: str = ""
    ) -> Any:
        return parse(self.answer_for(message, default))

    def text(self, message: str, default: str = "") -> str:
        return self.answer_for(message, default)

    def confirm(self, message: str, default: bool) -> bool:
        self.questions.append(message)
        if message.startswith("Change optional"):
            return self.change_optional
        return default

    def choice(self, message: str, choices: Any) -> str:
        self.questions.append(message)
        return str(choices[0][0])


def run_ask_auth(
    monkeypatch: pytest.MonkeyPatch, type_name: str, change_optional: bool
) -> tuple[dict[str, Any], ScriptedTerminal]:
    terminal = ScriptedTerminal(change_optional)
    monkeypatch.setattr(authform, "ask_parsed", terminal.parsed)
    monkeypatch.setattr(authform, "ask_text", terminal.text)
    monkeypatch.setattr(authform, "ask_confirm", terminal.confirm)
    monkeypatch.setattr(authform, "ask_choice", terminal.choice)
    console = Console(file=io.StringIO())
    answers = authform.ask_auth(AUTH_TYPES[type_name], "shop", console)
    return answers, terminal


@pytest.mark.parametrize("type_name", sorted(AUTH_TYPES))
@pytest.mark.parametrize("change_optional", [False, True], ids=["basic", "all"])
def test_every_auth_type_is_configurable(
    monkeypatch: pytest.MonkeyPatch, type_name: str, change_optional: bool
) -> None:
    answers, _ = run_ask_auth(monkeypatch, type_name, change_optional)

    config = AUTH_TYPES[type_name].config_model.model_validate(answers)
    assert config.type == type_name
    assert "value" not in answers


@pytest.mark.parametrize("type_name", sorted(AUTH_TYPES))
def test_wizard_never_asks_for_secret_value(
    monkeypatch: pytest.MonkeyPatch, type_name: str
) -> None:
    _, terminal = run_ask_auth(monkeypatch, type_name, change_optional=True)

    for question in terminal.questions:
        assert not question.startswith("value"), question
        if "env" in question.split(" ")[0].rstrip(":").split("_"):
            assert "variable NAME" in question


def test_bearer_static_suggests_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    answers, _ = run_ask_auth(monkeypatch, "bearer_static", change_optional=False)

    assert answers == {"type": "bearer_static", "env": "SHOP_TOKEN"}


def test_answers_equal_to_defaults_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers, _ = run_ask_auth(monkeypatch, "bearer_static", change_optional=True)

    assert "prefix" not in answers
    assert "header" in answers
    assert "invalidate_on" not in answers


def test_configured_static_auth_loads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    answers, _ = run_ask_auth(monkeypatch, "basic_auth", change_optional=False)
    provider = tmp_path / "shop.yaml"
    provider.write_text(
        f"name: shop\nbase_url: https://shop.test\nauth: {answers}\n".replace("'", '"')
    )

    config = load_config([tmp_path], None, {"SHOP_USERNAME": "u", "SHOP_PASSWORD": "p"})

    assert config.providers["shop"].missing_env == []
