"""Path patterns are compiled when a provider file loads, not first at serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from outpost.cli.main import main

PROVIDER = """\
name: shop
base_url: https://shop.test
auth: {type: none}
forwarding:
  mode: allowlist
  deny: [/admin/**]
  allow:
    - {path: "/ok/*", methods: [GET]}
    - {path: "PATTERN", methods: [GET]}
"""


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("/a/**/b/**", "has more than one '**'"),
        ("/a/*{id}", "has two wildcards without a '/' between them"),
        ("/a/***", "has '***'; use '*' or '**'"),
        ("/a/{id", "has an unbalanced brace"),
        ("/a/../b", "is not a canonical path"),
        ("a/b", "must start with '/'"),
    ],
)
def test_check_rejects_bad_pattern(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pattern: str, problem: str
) -> None:
    (tmp_path / "shop.yaml").write_text(PROVIDER.replace("PATTERN", pattern))

    code = main(["check", "--providers", str(tmp_path)])

    error = capsys.readouterr().err
    assert code == 2
    assert "shop.yaml:9:" in error
    assert "forwarding.allow[1].path" in error
    assert f"pattern {pattern!r} {problem}" in error


def test_check_accepts_valid_patterns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "shop.yaml").write_text(PROVIDER.replace("PATTERN", "/v1/{id}/**"))

    assert main(["check", "--providers", str(tmp_path)]) == 0
    assert "ok: 1 provider(s)" in capsys.readouterr().out
