"""``outpost token set|get|delete``, run in process against a SQLite store."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
import yaml

from outpost.cli import token
from outpost.cli.main import main
from outpost.store.sqlite import SqliteStore

TOKEN = "xoxb-1234567890-abcdefghijkl"


class TerminalInput(io.StringIO):
    """Standard input that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, str]:
    """A providers directory and a SQLite store URL."""
    providers = tmp_path / "providers"
    providers.mkdir()
    files = {
        "slack": {"type": "bearer_store", "redis_key": "slack_token"},
        "jira": {"type": "bearer_store"},
        "github": {"type": "bearer_static", "value": "x"},
    }
    for name, auth in files.items():
        provider = {"name": name, "base_url": "http://127.0.0.1:9", "auth": auth}
        (providers / f"{name}.yaml").write_text(yaml.safe_dump(provider))
    return providers, f"sqlite:///{tmp_path / 'state.db'}"


def run(setup: tuple[Path, str], *args: str, provider: str = "slack") -> int:
    providers, store = setup
    command = ["token", *args, "--provider", provider]
    return main([*command, "--providers", str(providers), "--store", store])


def stored(setup: tuple[Path, str], key: str) -> bytes | None:
    async def read() -> bytes | None:
        async with SqliteStore(setup[1].removeprefix("sqlite:///")) as store:
            return await store.get(key)

    return asyncio.run(read())


def test_set_reads_stdin_and_get_masks(
    setup: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))

    assert run(setup, "set") == 0
    assert stored(setup, "slack_token") == TOKEN.encode()
    assert run(setup, "get") == 0

    output = capsys.readouterr()
    assert TOKEN not in output.out + output.err
    assert f"xoxb… ({len(TOKEN)} characters)" in output.out
    assert "slack_token" in output.out


def test_hosts_file_keys_not_needed(
    setup: tuple[Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(
        "hosts:\n  - id: agent\n    cidrs: [127.0.0.1/32]\n"
        "    auth_token_env: UNSET_AGENT_KEY\n"
    )
    monkeypatch.delenv("UNSET_AGENT_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))

    code = run(setup, "set", "--hosts", str(hosts))

    assert code == 0, capsys.readouterr().err
    assert stored(setup, "slack_token") == TOKEN.encode()


def test_default_key_is_token_provider(
    setup: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN))

    assert run(setup, "set", provider="JIRA") == 0

    assert stored(setup, "token:jira") == TOKEN.encode()


def test_terminal_uses_hidden_prompt(
    setup: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts: list[str] = []

    def fake_getpass(prompt: str) -> str:
        prompts.append(prompt)
        return TOKEN

    monkeypatch.setattr("sys.stdin", TerminalInput("never read"))
    monkeypatch.setattr("getpass.getpass", fake_getpass)

    assert run(setup, "set") == 0

    assert len(prompts) == 1
    assert stored(setup, "slack_token") == TOKEN.encode()


def test_token_is_never_an_argument(
    setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        run(setup, "set", TOKEN)

    assert caught.value.code == 2
    assert stored(setup, "slack_token") is None


def test_delete_removes_the_token(
    setup: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN))
    run(setup, "set")

    assert run(setup, "delete") == 0
    assert stored(setup, "slack_token") is None
    assert run(setup, "get") == 1
    assert "outpost token set --provider slack" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["", "  \n", "two words", "tab\there", "tök"])
def test_unusable_token_is_rejected(
    setup: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    value: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(value))

    assert run(setup, "set") == 1

    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert value.strip() == "" or value not in error
    assert stored(setup, "slack_token") is None


def test_provider_without_stored_token_is_rejected(
    setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "get", provider="github") == 1
    error = capsys.readouterr().err
    assert "'bearer_static'" in error
    assert "jira, slack" in error


def test_unknown_provider_lists_candidates(
    setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(setup, "get", provider="nope") == 1
    assert "jira, slack" in capsys.readouterr().err


def test_memory_store_is_rejected(
    setup: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN))

    assert run((setup[0], "memory://"), "set") == 1
    assert "memory://" in capsys.readouterr().err


def test_unreachable_store_fails_cleanly(
    setup: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run((setup[0], "redis://:pw-never-shown@127.0.0.1:9/0"), "get") == 1

    error = capsys.readouterr().err
    assert "redis://127.0.0.1:9/0" in error
    assert "pw-never-shown" not in error


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("ghp_0123456789abcdef", "ghp_… (20 characters)"),
        ("short-token", "… (11 characters)"),
    ],
)
def test_mask_hides_short_tokens(value: str, masked: str) -> None:
    assert token.mask(value) == masked
