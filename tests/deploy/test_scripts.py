"""The installer and backup scripts, run in a copy of the repository.

A fake ``docker`` first on PATH records its arguments (and prints a fake
Redis snapshot for ``cat``), so the scripts run for real without Docker.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from outpost.config.loader import load_config

ROOT = Path(__file__).resolve().parents[2]
FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$DOCKER_LOG"
case "$*" in
    *"cat /data/dump.rdb"*) printf 'REDIS0011fake-snapshot' ;;
esac
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """Return a directory with the files the deployment scripts use."""
    root = tmp_path / "outpost"
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copytree(ROOT / "examples", root / "examples")
    for name in ("compose.yaml", "compose.public.yaml", "Makefile"):
        shutil.copy(ROOT / name, root / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(0o755)
    return root


def run_script(
    checkout: Path, script: str, answers: str = "", *args: str
) -> subprocess.CompletedProcess[str]:
    """Run a script of the copy with the fake docker, typing ``answers``."""
    env = dict(os.environ)
    env["PATH"] = f"{checkout.parent / 'bin'}:{env['PATH']}"
    env["DOCKER_LOG"] = str(checkout.parent / "docker.log")
    return subprocess.run(
        ["bash", str(checkout / "scripts" / script), *args],
        input=answers,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def docker_calls(checkout: Path) -> list[str]:
    """Return the fake docker's recorded command lines."""
    log = checkout.parent / "docker.log"
    return log.read_text().splitlines() if log.exists() else []


def read_env(checkout: Path) -> dict[str, str]:
    """Parse the .env file the installer wrote."""
    values = {}
    for line in (checkout / ".env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def mode_of(path: Path) -> int:
    """Return the permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


def test_install_sidecar_writes_env_and_config(checkout: Path) -> None:
    result = run_script(checkout, "install.sh", "sidecar\n\n")

    assert result.returncode == 0, result.stderr
    env = read_env(checkout)
    assert env["COMPOSE_FILE"] == "compose.yaml"
    assert env["AGENT_SUBNET"] == "172.28.0.0/24"
    assert len(env["REDIS_PASSWORD"]) == 64
    assert len(env["OUTPOST_AGENT_KEY"]) == 64
    assert env["REDIS_PASSWORD"] != env["OUTPOST_AGENT_KEY"]
    assert mode_of(checkout / ".env") == 0o600
    assert "Deployment mode" in result.stderr
    assert docker_calls(checkout) == ["compose up -d --build"]

    hosts = yaml.safe_load((checkout / "config" / "hosts.yaml").read_text())
    assert hosts["hosts"][0]["cidrs"] == ["172.28.0.0/24"]
    assert hosts["hosts"][0]["auth_token_env"] == "OUTPOST_AGENT_KEY"
    assert sorted(os.listdir(checkout / "config" / "providers")) == sorted(
        os.listdir(checkout / "examples" / "providers")
    )


def test_installed_config_loads(checkout: Path) -> None:
    result = run_script(checkout, "install.sh", "sidecar\n10.9.0.0/24\n")
    assert result.returncode == 0, result.stderr
    env = read_env(checkout)

    config = load_config(
        [checkout / "config" / "providers"],
        checkout / "config" / "hosts.yaml",
        env,
        allow_missing_credentials=True,
    )

    assert config.hosts is not None
    assert config.hosts.hosts[0].cidrs == ["10.9.0.0/24"]
    assert config.providers


def test_install_public_asks_domain_and_email(checkout: Path) -> None:
    answers = (
        "public\noutpost.example.com\nops@example.com\n"
        "203.0.113.0/24, 198.51.100.7/32\n"
    )

    result = run_script(checkout, "install.sh", answers)

    assert result.returncode == 0, result.stderr
    env = read_env(checkout)
    assert env["COMPOSE_FILE"] == "compose.yaml:compose.public.yaml"
    assert env["OUTPOST_DOMAIN"] == "outpost.example.com"
    assert env["ACME_EMAIL"] == "ops@example.com"
    hosts = yaml.safe_load((checkout / "config" / "hosts.yaml").read_text())
    assert hosts["hosts"][0]["cidrs"] == ["203.0.113.0/24", "198.51.100.7/32"]
    assert "https://outpost.example.com" in result.stderr


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ("cloud\n", "mode 'cloud' is not valid"),
        ("public\nnot a domain\n", "is not a valid host name"),
        ("public\nexample.com\nnobody\n", "e-mail 'nobody' is not valid"),
    ],
)
def test_install_rejects_bad_answers(
    checkout: Path, answers: str, message: str
) -> None:
    result = run_script(checkout, "install.sh", answers)

    assert result.returncode == 1
    assert message in result.stderr
    assert not (checkout / ".env").exists()
    assert docker_calls(checkout) == []


def test_install_keeps_existing_env_unless_confirmed(checkout: Path) -> None:
    (checkout / ".env").write_text("REDIS_PASSWORD=keep\n")

    result = run_script(checkout, "install.sh", "no\n")

    assert result.returncode == 1
    assert (checkout / ".env").read_text() == "REDIS_PASSWORD=keep\n"
    assert docker_calls(checkout) == []


def test_backup_is_owner_only(checkout: Path) -> None:
    assert run_script(checkout, "install.sh", "sidecar\n\n").returncode == 0

    result = run_script(checkout, "backup.sh")

    assert result.returncode == 0, result.stderr
    archive = checkout / result.stdout.strip()
    assert archive.exists()
    assert mode_of(archive) == 0o600
    assert mode_of(archive.parent) == 0o700
    listing = subprocess.run(
        ["tar", "-tzf", str(archive)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {"env", "dump.rdb", "config/hosts.yaml"} <= set(listing)
    assert "compose exec -T redis redis-cli SAVE" in docker_calls(checkout)


def test_restore_rejects_missing_file(checkout: Path) -> None:
    result = run_script(checkout, "restore.sh", "", "backups/none.tar.gz")

    assert result.returncode == 1
    assert "backups/none.tar.gz not found" in result.stderr
    assert docker_calls(checkout) == []


def test_restore_puts_back_env_and_config(checkout: Path) -> None:
    assert run_script(checkout, "install.sh", "sidecar\n\n").returncode == 0
    archive = run_script(checkout, "backup.sh").stdout.strip()
    original_env = (checkout / ".env").read_text()
    (checkout / ".env").write_text("REDIS_PASSWORD=changed\n")
    (checkout / "config" / "hosts.yaml").unlink()

    result = run_script(checkout, "restore.sh", "", archive)

    assert result.returncode == 0, result.stderr
    assert (checkout / ".env").read_text() == original_env
    assert mode_of(checkout / ".env") == 0o600
    assert (checkout / "config" / "hosts.yaml").exists()
    assert (checkout / ".env.before-restore").read_text() == "REDIS_PASSWORD=changed\n"
    calls = docker_calls(checkout)
    assert calls[-1] == "compose up -d"
    assert any(call.startswith("compose run --rm -T --no-deps") for call in calls)
