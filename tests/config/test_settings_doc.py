"""docs/settings.md names every variable and flag the code reads."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from outpost.cli.main import build_parser
from outpost.config import settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
# Every upper-case string literal in settings.py that is not a log level.
VARIABLES = sorted(
    set(re.findall(r'"([A-Z][A-Z0-9_]+)"', Path(settings.__file__).read_text()))
    - {"INFO"}
)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(
        item for item in parser._actions if isinstance(item, argparse._SubParsersAction)
    )
    return dict(action.choices)


def test_variables_were_found() -> None:
    assert "OUTPOST_PROVIDERS" in VARIABLES
    assert "REDIS_URL" in VARIABLES


@pytest.mark.parametrize("variable", VARIABLES)
def test_settings_doc_names_variable(variable: str) -> None:
    assert f"`{variable}`" in DOC, f"document {variable} in docs/settings.md"


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_settings_doc_names_command(command: str) -> None:
    assert f"`outpost {command}" in DOC, f"document {command} in docs/settings.md"


@pytest.mark.parametrize(
    "flag",
    sorted(
        {
            option
            for parser in subcommands().values()
            for action in parser._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help"
        }
    ),
)
def test_settings_doc_names_flag(flag: str) -> None:
    assert f"`{flag}" in DOC, f"document {flag} in docs/settings.md"
