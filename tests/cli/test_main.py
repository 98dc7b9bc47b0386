"""The check, providers and serve commands, run in process."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost.cli.main import main

EXAMPLES = Path(__file__).parents[2] / "examples"
GOOD = """\
name: github
base_url: https://api.github.com
auth: {type: bearer_static, env: GITHUB_TOKEN}
"""


def test_check_accepts_examples(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "check",
            "--providers",
            str(EXAMPLES / "providers"),
            "--hosts",
            str(EXAMPLES / "hosts.yaml"),
            "--allow-missing-credentials",
        ]
    )

    output = capsys.readouterr()
    assert code == 0
    assert output.out.startswith("ok: 6 provider(s), 1 host(s)")


def test_check_prints_every_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("github", "a", 1) + "extr: 1\n")
    (tmp_path / "b.yaml").write_text(GOOD.replace("github", "b", 1) + "deny: []\n")

    code = main(["check", "--providers", str(tmp_path)])

    errors = capsys.readouterr().err
    assert code == 2
    assert f"{tmp_path / 'a.yaml'}:4:1" in errors
    assert f"{tmp_path / 'b.yaml'}:4:1" in errors
    assert "2 configuration error(s)" in errors


def test_check_fails_on_missing_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    (tmp_path / "github.yaml").write_text(GOOD)

    code = main(["check", "--providers", str(tmp_path)])

    assert code == 2
    assert "GITHUB_TOKEN is not set" in capsys.readouterr().err


def test_providers_lists_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    (tmp_path / "github.yaml").write_text(GOOD)

    code = main(
        ["providers", "--providers", str(tmp_path), "--allow-missing-credentials"]
    )

    line = capsys.readouterr().out.strip()
    assert code == 0
    assert line.startswith("github")
    assert "bearer_static" in line
    assert "[needs GITHUB_TOKEN]" in line


def test_serve_exits_2_on_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "github.yaml").write_text(GOOD.replace("base_url", "base_ur"))

    code = main(["serve", "--providers", str(tmp_path), "--port", "1"])

    assert code == 2
    assert "did you mean 'base_url'?" in capsys.readouterr().err


def test_bad_environment_value_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTPOST_WORKERS", "many")

    code = main(["check"])

    assert code == 2
    assert "OUTPOST_WORKERS='many'" in capsys.readouterr().err
