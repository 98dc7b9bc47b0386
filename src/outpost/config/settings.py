"""Process settings: command-line flags, then ``OUTPOST_*`` variables, then defaults.

Older variable names (``PROVIDERS_DIR``, ``REDIS_URL``, ``PROXY_PORT`` and
others) are read after the ``OUTPOST_*`` ones, so existing deployments keep
their environment files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from outpost.config.urls import parse_cidr

DEFAULT_STATE_FILE = Path(".outpost") / "state.db"
SETTINGS_VARIABLE = "OUTPOST_SETTINGS_JSON"
PID_FILE_NAME = "outpost.pid"


@dataclass
class Settings:
    """Everything ``outpost serve`` needs besides the YAML files themselves."""

    provider_dirs: list[Path] = field(default_factory=lambda: [Path("providers")])
    hosts_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    allow_missing_credentials: bool = False
    default_provider: str | None = None
    trusted_proxies: list[str] = field(default_factory=list)
    store_url: str | None = None
    state_file: Path = DEFAULT_STATE_FILE
    rate_limit_queue_timeout: float = 2.0
    max_signed_body_bytes: int = 10 * 1024 * 1024
    shutdown_timeout: float = 30.0
    log_level: str = "INFO"
    pid_file: Path | None = None
    metrics_dir: Path | None = None

    def resolved_pid_file(self) -> Path:
        """Return the pid file path: the configured one, else beside the state."""
        return self.pid_file or self.state_file.parent / PID_FILE_NAME

    def to_json(self) -> str:
        """Serialise for the worker processes, which rebuild it with from_json."""
        data = asdict(self)
        data["provider_dirs"] = [str(path) for path in self.provider_dirs]
        data["hosts_file"] = str(self.hosts_file) if self.hosts_file else None
        data["state_file"] = str(self.state_file)
        data["pid_file"] = str(self.pid_file) if self.pid_file else None
        data["metrics_dir"] = str(self.metrics_dir) if self.metrics_dir else None
        return orjson.dumps(data).decode()

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Rebuild settings serialised by :meth:`to_json`."""
        data: dict[str, Any] = orjson.loads(text)
        data["provider_dirs"] = [Path(path) for path in data["provider_dirs"]]
        data["hosts_file"] = Path(data["hosts_file"]) if data["hosts_file"] else None
        data["state_file"] = Path(data["state_file"])
        for name in ("pid_file", "metrics_dir"):
            data[name] = Path(data[name]) if data.get(name) else None
        return cls(**data)


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean; use true or false")


def _parse_number(name: str, value: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a valid {kind.__name__}") from exc


def split_list(value: str, separator: str) -> list[str]:
    """Split a separated list, dropping empty items and surrounding spaces."""
    return [item.strip() for item in value.split(separator) if item.strip()]


def parse_cidr_list(name: str, value: str) -> list[str]:
    """Split comma-separated CIDRs and check each one, naming ``name`` on error.

    Checked here because the workers parse the list only after they start,
    where a bad entry would crash them instead of stopping the command.
    """
    cidrs = split_list(value, ",")
    for cidr in cidrs:
        try:
            parse_cidr(cidr)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return cidrs


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from environment variables over the defaults.

    Raises ValueError naming the variable when a value cannot be parsed.
    """
    env = os.environ if env is None else env
    settings = Settings()

    dirs = _first(env, "OUTPOST_PROVIDERS")
    if dirs:
        settings.provider_dirs = [Path(item) for item in split_list(dirs, ":")]
    elif env.get("PROVIDERS_DIR"):
        settings.provider_dirs = [Path(env["PROVIDERS_DIR"])]
        if env.get("EXTRA_PROVIDERS_DIR"):
            settings.provider_dirs.append(Path(env["EXTRA_PROVIDERS_DIR"]))

    hosts = _first(env, "OUTPOST_HOSTS", "HOSTS_CONFIG_PATH")
    settings.hosts_file = Path(hosts) if hosts else None
    settings.host = _first(env, "OUTPOST_HOST") or settings.host
    port = _first(env, "OUTPOST_PORT", "PROXY_PORT")
    if port:
        settings.port = _parse_number("OUTPOST_PORT", port, int)
    workers = _first(env, "OUTPOST_WORKERS")
    if workers:
        settings.workers = _parse_number("OUTPOST_WORKERS", workers, int)
    allow = _first(env, "OUTPOST_ALLOW_MISSING_CREDENTIALS")
    if allow:
        settings.allow_missing_credentials = _parse_bool(
            "OUTPOST_ALLOW_MISSING_CREDENTIALS", allow
        )
    settings.default_provider = _first(
        env, "OUTPOST_DEFAULT_PROVIDER", "DEFAULT_PROVIDER"
    )
    proxies = _first(env, "OUTPOST_TRUSTED_PROXIES", "TRUSTED_PROXIES")
    if proxies:
        settings.trusted_proxies = parse_cidr_list("OUTPOST_TRUSTED_PROXIES", proxies)
    settings.store_url = _first(env, "OUTPOST_STORE", "REDIS_URL")
    state = _first(env, "OUTPOST_STATE_FILE")
    if state:
        settings.state_file = Path(state)
    queue = _first(env, "OUTPOST_RATE_LIMIT_QUEUE_TIMEOUT", "RATE_LIMIT_QUEUE_TIMEOUT")
    if queue:
        settings.rate_limit_queue_timeout = _parse_number(
            "OUTPOST_RATE_LIMIT_QUEUE_TIMEOUT", queue, float
        )
    settings.log_level = (_first(env, "OUTPOST_LOG_LEVEL") or "INFO").upper()
    pid_file = _first(env, "OUTPOST_PID_FILE")
    settings.pid_file = Path(pid_file) if pid_file else None
    metrics_dir = _first(env, "OUTPOST_METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR")
    settings.metrics_dir = Path(metrics_dir) if metrics_dir else None
    return settings
