"""Starting the servers of a run and reading their CPU time and memory."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import psutil


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Service:
    """One server process tree, pinned to CPU cores, with its output in a file."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        cores: str | None,
        log: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        pinned = ["taskset", "-c", cores, *command] if cores else command
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            pinned, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        self.root = psutil.Process(self.process.pid)

    def tree(self) -> list[psutil.Process]:
        """Return the root process and all its descendants."""
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """Return the processes that serve requests (children, or the root)."""
        children = self.root.children(recursive=True)
        return children or [self.root]

    def cpu_seconds(self) -> float:
        """Return user plus system CPU time of the whole tree so far."""
        total = 0.0
        for process in self.tree():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        """Terminate the tree, then kill whatever is left after 10 s."""
        processes = self.tree()
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(processes, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self._log.close()


class RssSampler:
    """Samples the resident memory of some processes in a background thread."""

    def __init__(self, processes: list[psutil.Process], interval: float = 0.1):
        self._processes = processes
        self._interval = interval
        self._stop = threading.Event()
        self.peak: dict[int, int] = {process.pid: 0 for process in processes}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in self._processes:
                try:
                    rss = process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peak[process.pid] = max(self.peak[process.pid], rss)
            self._stop.wait(self._interval)

    def max_mb(self) -> float:
        """Return the highest RSS of any one process, in MiB."""
        return max(self.peak.values(), default=0) / (1024 * 1024)
