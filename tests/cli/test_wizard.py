"""``outpost add-provider`` driven through a real pseudo-terminal."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pexpect
import pyte
import pytest
import yaml

from outpost.cli.main import main
from outpost.config.schema import provider_schema

CTRL_C = "\x03"
TIMEOUT = 15
ROWS, COLUMNS = 50, 140
# Ctrl-U clears the input line, so a pre-filled default can be replaced.
CLEAR = "\x15"
# prompt_toolkit redraws lines with cursor movements in place of spaces.
GAP = r"(?:\s|\x1b\[[0-9;?]*[A-Za-z])+"


def on_screen(text: str) -> str:
    """Return a regex for ``text`` (itself a regex) that tolerates redraws."""
    return GAP.join(text.split(" "))


class Wizard:
    """One ``outpost add-provider`` process on a pseudo-terminal."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str]) -> None:
        self.transcript = open(cwd / "terminal.log", "w", encoding="utf-8")  # noqa: SIM115
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "outpost.cli.main", "add-provider", *args],
            cwd=str(cwd),
            env={
                **os.environ,
                **env,
                "PROMPT_TOOLKIT_NO_CPR": "1",
                "TERM": "xterm-256color",
                "NO_COLOR": "1",
            },
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(ROWS, COLUMNS),
        )
        self.child.logfile_read = self.transcript
        # A terminal emulator rebuilds the screen, because prompt_toolkit
        # redraws an error message by moving over unchanged characters.
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.Stream(self.screen)

    def answer(self, prompt: str, keys: str) -> None:
        """Wait for ``prompt`` (a regex) to appear, then type ``keys``."""
        self.child.expect(on_screen(prompt))
        self.stream.feed(self.child.before + self.child.after)
        self.child.send(keys)

    def rejected(self, message: str, keys: str) -> None:
        """Wait for the validation ``message`` under the prompt, then type."""
        self.stream.feed(self.child.buffer)
        self.child.buffer = ""
        deadline = time.monotonic() + TIMEOUT
        while message not in self.screen_text():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{message!r} never shown; screen:\n{self.screen_text()}"
                )
            try:
                self.stream.feed(self.child.read_nonblocking(4096, timeout=0.1))
            except pexpect.TIMEOUT:
                continue
        self.child.send(keys)

    def screen_text(self) -> str:
        """Return what the terminal shows now, one line per row."""
        return "\n".join(line.rstrip() for line in self.screen.display)

    def expect(self, text: str) -> None:
        """Wait for ``text`` (a regex) to appear."""
        self.child.expect(on_screen(text))

    def finish(self) -> int:
        """Wait for the process to exit and return its exit status."""
        self.child.expect(pexpect.EOF)
        self.child.close()
        self.transcript.close()
        status = self.child.exitstatus
        assert status is not None
        return int(status)

    def close(self) -> None:
        """Kill the process if a failed test left it running."""
        if self.child.isalive():
            self.child.terminate(force=True)
        self.transcript.close()


@pytest.fixture
def wizards(tmp_path: Path) -> Iterator[list[Wizard]]:
    started: list[Wizard] = []
    yield started
    for wizard in started:
        wizard.close()


def start(
    wizards: list[Wizard],
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> Wizard:
    wizard = Wizard(cwd, list(args), env or {})
    wizards.append(wizard)
    return wizard


def answer_basics_and_auth(wizard: Wizard) -> None:
    """Answer name, URL, description and an api_key_header auth block."""
    wizard.answer("Provider name", "acme\r")
    wizard.answer("base URL", "https://api.acme.test/v2\r")
    wizard.answer("Description", "Acme API\r")
    wizard.answer("Auth type", "api_key_header\r")
    wizard.answer(r"env \(variable NAME", CLEAR + "ACME_API_KEY\r")
    wizard.answer("header", "X-Api-Key\r")
    wizard.answer("Change optional", "n")


def answer_allowlist(wizard: Wizard) -> None:
    """Answer headers, one GET rule, one deny pattern and default limits."""
    wizard.answer("Default header", "Accept\r")
    wizard.answer("Value of Accept", "application/json\r")
    wizard.answer("Default header", "\r")
    wizard.answer("Forwarding mode", "allowlist\r")
    wizard.answer("Path pattern", "/v2/items/{id}\r")
    wizard.answer("Methods for", "\r")
    wizard.answer("category", "\r")
    wizard.answer("Sensitive", "n")
    wizard.answer("Cache TTL", CLEAR + "30\r")
    wizard.answer("Path pattern", "\r")
    wizard.answer("Deny pattern", "/admin/**\r")
    wizard.answer("Deny pattern", "\r")
    wizard.answer("Keep the default rate limit", "y")


def test_wizard_writes_file_that_passes_check(
    tmp_path: Path,
    wizards: list[Wizard],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    providers = tmp_path / "providers"
    wizard = start(wizards, tmp_path, env={"OUTPOST_PROVIDERS": str(providers)})
    target = providers / "acme.yaml"

    answer_basics_and_auth(wizard)
    answer_allowlist(wizard)
    wizard.answer("Save to", "")
    assert not target.exists()
    wizard.child.send("y")
    wizard.expect("Saved")

    assert wizard.finish() == 0
    document = yaml.safe_load(target.read_text())
    assert document == {
        "name": "acme",
        "description": "Acme API",
        "base_url": "https://api.acme.test/v2",
        "auth": {
            "type": "api_key_header",
            "env": "ACME_API_KEY",
            "header": "X-Api-Key",
        },
        "default_headers": {"Accept": "application/json"},
        "forwarding": {
            "mode": "allowlist",
            "deny": ["/admin/**"],
            "allow": [
                {
                    "path": "/v2/items/{id}",
                    "methods": ["GET"],
                    "category": "read",
                    "cache_ttl": 30,
                }
            ],
        },
    }
    assert "ACME_API_KEY" in target.read_text().split("name: acme")[0]
    jsonschema.validate(document, provider_schema())

    monkeypatch.setenv("ACME_API_KEY", "dummy")
    assert main(["check", "--providers", str(providers)]) == 0
    assert "ok: 1 provider(s)" in capsys.readouterr().out


def test_wizard_reprompts_bad_answers(
    tmp_path: Path,
    wizards: list[Wizard],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "out" / "shop.yaml"
    wizard = start(wizards, tmp_path, "--output", str(target))

    wizard.answer("Provider name", "-shop\r")
    wizard.rejected("must match [a-z0-9]", CLEAR + "Shop\r")
    wizard.answer("base URL", "ftp://shop.test\r")
    wizard.rejected("must start with http://", CLEAR + "https://shop.test\r")
    wizard.answer("Description", "\r")
    wizard.answer("Auth type", "basic_auth\r")
    wizard.answer(r"username_env \(variable", CLEAR + "SHOP USER\r")
    wizard.rejected("is not a variable name", CLEAR + "SHOP_USER\r")
    wizard.answer(r"password_env \(variable", CLEAR + "SHOP_PASSWORD\r")
    wizard.answer("Change optional", "n")
    wizard.answer("Default header", "Authorization\r")
    wizard.rejected("Authorization carries a credential", CLEAR + "\r")
    wizard.answer("Forwarding mode", "transparent\r")
    wizard.answer("Treat every write", "y")
    wizard.answer("Cache TTL", CLEAR + "abc\r")
    wizard.rejected("'abc' is not a number of seconds", CLEAR + "-1\r")
    wizard.rejected("'-1' must be a finite number of seconds", CLEAR + "5\r")
    wizard.answer("Path pattern", "/orders/**/x/**\r")
    wizard.rejected("has more than one '**'", CLEAR + "orders\r")
    wizard.rejected("'orders' must start with '/'", CLEAR + "/orders\r")
    wizard.answer("Methods for", CLEAR + "FETCH\r")
    wizard.rejected("unknown HTTP method 'FETCH'", CLEAR + "post\r")
    wizard.answer("category", CLEAR + "pay ments\r")
    wizard.rejected("'pay ments' is not a category name", CLEAR + "payments\r")
    wizard.answer("Sensitive", "y")
    wizard.answer("Path pattern", "\r")
    wizard.answer("Deny pattern", "\r")
    wizard.answer("Keep the default rate limit", "n")
    wizard.answer("category 'payments'", "ten per second\r")
    wizard.rejected("'ten per second' is not requests/window", CLEAR + "0/1s\r")
    wizard.rejected("'0/1s': Input should be greater than 0", CLEAR + "2/1s, 20/1m\r")
    wizard.answer("category 'default'", "50/1s\r")
    wizard.answer("Save to", "y")

    assert wizard.finish() == 0
    document = yaml.safe_load(target.read_text())
    assert document["name"] == "shop"
    assert document["auth"] == {
        "type": "basic_auth",
        "username_env": "SHOP_USER",
        "password_env": "SHOP_PASSWORD",
    }
    assert "default_headers" not in document
    assert document["forwarding"] == {
        "mode": "transparent",
        "default_cache_ttl": 5,
        "allow": [
            {
                "path": "/orders",
                "methods": ["POST"],
                "category": "payments",
                "sensitive": True,
            }
        ],
        "rate_limits": {
            "payments": [
                {"capacity": 2, "window_ms": 1000},
                {"capacity": 20, "window_ms": 60000},
            ],
            "default": [{"capacity": 50, "window_ms": 1000}],
        },
    }
    monkeypatch.setenv("SHOP_USER", "user")
    monkeypatch.setenv("SHOP_PASSWORD", "dummy")
    assert main(["check", "--providers", str(target.parent)]) == 0
    capsys.readouterr()


def test_ctrl_c_exits_130_and_writes_nothing(
    tmp_path: Path, wizards: list[Wizard]
) -> None:
    target = tmp_path / "acme.yaml"
    wizard = start(wizards, tmp_path, "--output", str(target))

    answer_basics_and_auth(wizard)
    wizard.answer("Default header", CTRL_C)
    wizard.expect("Cancelled.")

    assert wizard.finish() == 130
    assert list(tmp_path.glob("*.yaml")) == []


def test_declined_save_writes_nothing(tmp_path: Path, wizards: list[Wizard]) -> None:
    target = tmp_path / "acme.yaml"
    wizard = start(wizards, tmp_path, "--output", str(target))

    answer_basics_and_auth(wizard)
    answer_allowlist(wizard)
    wizard.answer("Save to", "n")
    wizard.expect("Nothing was written.")

    assert wizard.finish() == 1
    assert list(tmp_path.glob("*.yaml")) == []


def test_declined_overwrite_keeps_file(tmp_path: Path, wizards: list[Wizard]) -> None:
    target = tmp_path / "acme.yaml"
    target.write_text("old: content\n")
    wizard = start(wizards, tmp_path, "--output", str(target))

    answer_basics_and_auth(wizard)
    answer_allowlist(wizard)
    wizard.answer("exists. Overwrite it?", "n")
    wizard.expect("Nothing was written.")

    assert wizard.finish() == 1
    assert target.read_text() == "old: content\n"


def test_preview_shows_yaml_before_saving(
    tmp_path: Path, wizards: list[Wizard]
) -> None:
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "provider.schema.json").write_text(
        json.dumps(provider_schema())
    )
    target = tmp_path / "providers" / "acme.yaml"
    wizard = start(wizards, tmp_path, "--output", str(target))

    answer_basics_and_auth(wizard)
    answer_allowlist(wizard)
    wizard.answer("Save to", "")
    screen = wizard.screen_text()
    assert "mode: allowlist" in screen
    assert "- {path: '/v2/items/{id}', methods: [GET], category: read" in screen
    assert "export ACME_API_KEY before 'outpost serve'" in screen
    wizard.child.send("y")

    assert wizard.finish() == 0
    first_line = target.read_text().splitlines()[0]
    assert first_line == (
        "# yaml-language-server: $schema=../schema/provider.schema.json"
    )


def test_add_provider_needs_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["add-provider", "--output", "unused.yaml"])

    assert code == 2
    assert "needs a terminal" in capsys.readouterr().err
