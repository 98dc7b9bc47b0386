"""``outpost init`` and ``outpost schema``, run in process."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from outpost.cli.main import main
from outpost.config.schema import hosts_schema, provider_schema, render

SCHEMA_LINE = "# yaml-language-server: $schema="


def test_schema_writes_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["schema", "--output", str(tmp_path / "out")])

    assert code == 0
    provider = (tmp_path / "out" / "provider.schema.json").read_text()
    hosts = (tmp_path / "out" / "hosts.schema.json").read_text()
    assert provider == render(provider_schema())
    assert hosts == render(hosts_schema())
    assert "provider.schema.json" in capsys.readouterr().out


def test_init_writes_starter_that_passes_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "conf"

    assert main(["init", str(root)]) == 0

    hosts = root / "hosts.yaml"
    example = root / "providers" / "example.yaml"
    assert hosts.read_text().startswith(SCHEMA_LINE + "schema/hosts.schema.json\n")
    assert example.read_text().startswith(
        SCHEMA_LINE + "../schema/provider.schema.json\n"
    )
    assert (root / "schema" / "provider.schema.json").is_file()
    assert (root / "schema" / "hosts.schema.json").is_file()

    monkeypatch.chdir(root)
    capsys.readouterr()
    assert main(["check", "--hosts", "hosts.yaml"]) == 0
    assert "ok: 0 provider(s), 1 host(s)" in capsys.readouterr().out


def test_init_files_match_their_schemas(tmp_path: Path) -> None:
    main(["init", str(tmp_path)])

    for path, schema_file in [
        (tmp_path / "hosts.yaml", "hosts.schema.json"),
        (tmp_path / "providers" / "example.yaml", "provider.schema.json"),
    ]:
        schema = json.loads((tmp_path / "schema" / schema_file).read_text())
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_init_hosts_admit_only_loopback(tmp_path: Path) -> None:
    main(["init", str(tmp_path)])

    document = yaml.safe_load((tmp_path / "hosts.yaml").read_text())
    (host,) = document["hosts"]
    assert host["cidrs"] == ["127.0.0.0/8", "::1/128"]
    assert host["can_call_sensitive"] is False


def test_init_copies_catalogue_entry_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path), "--catalogue", "twilio"]) == 0

    copy = (tmp_path / "providers" / "twilio.yaml").read_text()
    assert copy.startswith(SCHEMA_LINE + "../schema/provider.schema.json\n")
    assert yaml.safe_load(copy)["enabled"] is True
    output = capsys.readouterr().out
    assert "export TWILIO_ACCOUNT_SID=..." in output
    assert "export TWILIO_AUTH_TOKEN=..." in output

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC0")
    assert main(["check", "--hosts", "hosts.yaml"]) == 2
    assert "TWILIO_AUTH_TOKEN is not set" in capsys.readouterr().err

    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "dummy")
    assert main(["check", "--hosts", "hosts.yaml"]) == 0
    assert "ok: 1 provider(s), 1 host(s)" in capsys.readouterr().out


def test_init_keeps_existing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "hosts.yaml").write_text("hosts: []\n")

    assert main(["init", str(tmp_path)]) == 0

    assert (tmp_path / "hosts.yaml").read_text() == "hosts: []\n"
    assert "kept" in capsys.readouterr().out


def test_init_force_overwrites(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text("hosts: []\n")

    assert main(["init", str(tmp_path), "--force"]) == 0

    assert "local-agent" in (tmp_path / "hosts.yaml").read_text()


def test_init_unknown_catalogue_name_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "conf"

    code = main(["init", str(root), "--catalogue", "strpe"])

    assert code == 2
    assert "did you mean 'stripe'?" in capsys.readouterr().err
    assert not root.exists()


def test_init_into_a_file_reports_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    occupied = tmp_path / "taken"
    occupied.write_text("")

    code = main(["init", str(occupied)])

    assert code == 2
    assert "cannot write into" in capsys.readouterr().err
