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


PORT_ATTEMPTS = 3


def listening_inodes(port: int) -> set[str]:
    """Return the inodes of the TCP sockets listening on ``port``, any address."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            # State 0A is LISTEN; field 9 is the socket's inode.
            if fields[3] == "0A" and local_port == port:
                inodes.add(fields[9])
    return inodes


def socket_inodes(pid: int) -> set[str]:
    """Return the inodes of the sockets held by ``pid`` and its child processes.

    The worker processes, not the main one, hold the listeners.
    """
    inodes: set[str] = set()
    for process in [pid, *child_pids(pid)]:
        fd_dir = Path(f"/proc/{process}/fd")
        try:
            targets = [os.readlink(fd_dir / name) for name in os.listdir(fd_dir)]
        except OSError:
            continue
        for target in targets:
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def child_pids(pid: int) -> list[int]:
    """Return the ids of the direct children of process ``pid``."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The parent id is the second field after the ")" that ends the name.
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            children.append(int(stat.parent.name))
    return children


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
        """Start the process and wait until it alone listens and /healthz answers.

        free_port() releases its port before Outpost binds it, so another test
        process may take the port in between. Each worker binds its own
        SO_REUSEPORT listener, so two servers can then share one port and
        split its connections.
        Such a start is retried on a new port.
        """
        for _ in range(PORT_ATTEMPTS):
            if self._start_once(timeout):
                return self
            self.stop()
            self.port = free_port()
        raise RuntimeError(f"no free port after {PORT_ATTEMPTS} attempts")

    def _start_once(self, timeout: float) -> bool:
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
                if "in use" in self.output():
                    return False
                raise RuntimeError(f"outpost exited early:\n{self.output()}")
            # Each worker binds its own SO_REUSEPORT listener, so several
            # listeners are expected; one outside this process tree is not.
            listeners = listening_inodes(self.port)
            if listeners - socket_inodes(self.process.pid):
                return False
            try:
                healthy = self.get("/healthz").status == 200
            except OSError:
                healthy = False
            if healthy and len(listeners) >= self.workers:
                return True
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
