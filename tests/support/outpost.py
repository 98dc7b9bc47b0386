"""Starts Outpost as a real server process on a free loopback port.

Tests talk to it over real sockets and read everything it printed, so that
secrets can be searched for in every line of output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.rawhttp import RawResponse, request_bytes, send_raw


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OutpostServer:
    """One ``outpost serve`` process and the files it was started with."""

    def __init__(
        self,
        workdir: Path,
        providers: list[dict[str, Any]],
        *,
        hosts: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        workers: int = 1,
    ) -> None:
        self.workdir = workdir
        self.provider_dir = workdir / "providers"
        self.provider_dir.mkdir(parents=True, exist_ok=True)
        for provider in providers:
            path = self.provider_dir / f"{provider['name']}.yaml"
            path.write_text(yaml.safe_dump(provider, sort_keys=False))
        self.hosts_file: Path | None = None
        if hosts is not None:
            self.hosts_file = workdir / "hosts.yaml"
            self.hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False))
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.env["OUTPOST_STATE_FILE"] = str(workdir / "state.db")
        self.args = list(args or [])
        self.workers = workers
        self.stdout_path = workdir / "outpost.stdout"
        self.stderr_path = workdir / "outpost.stderr"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Return Outpost's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """Return the command line that starts this server."""
        command = [
            sys.executable,
            "-m",
            "outpost.cli.main",
            "serve",
            "--providers",
            str(self.provider_dir),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.hosts_file is not None:
            command += ["--hosts", str(self.hosts_file)]
        return command + self.args

    def start(self, timeout: float = 20.0) -> OutpostServer:
        """Start the process and wait until /healthz answers."""
        with (
            self.stdout_path.open("ab") as stdout,
            self.stderr_path.open("ab") as stderr,
        ):
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                stdout=stdout,
                stderr=stderr,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"outpost exited early:\n{self.output()}")
            try:
                if self.get("/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"outpost did not become healthy:\n{self.output()}")

    def stop(self, timeout: float = 15.0) -> int:
        """Send SIGTERM and wait; return the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def output(self) -> str:
        """Return everything the process wrote to stdout and stderr so far."""
        text = ""
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def access_lines(self) -> list[dict[str, Any]]:
        """Return the parsed access-log lines written so far."""
        import orjson

        lines = []
        for line in self.stdout_path.read_text().splitlines():
            if line.startswith('{"time"') and '"request_id"' in line:
                lines.append(orjson.loads(line))
        return lines

    def get(
        self, target: str, headers: list[tuple[str, str]] | None = None
    ) -> RawResponse:
        """Send a GET with exact target bytes and read the answer."""
        return self.request("GET", target, headers)

    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> RawResponse:
        """Send one request with exact bytes on a fresh connection."""
        return send_raw(self.port, request_bytes(method, target, headers, body))
