"""SIGHUP reload and SIGTERM drain on real Outpost processes under traffic."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any

import yaml

from tests.conftest import TEST_SECRET, StartOutpost
from tests.support.outpost import OutpostServer
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

SECRET_ENV = {"OUTPOST_TEST_SECRET": TEST_SECRET}


def provider(name: str, upstream: RecordingUpstream) -> dict[str, Any]:
    """Return a transparent provider named ``name`` that points at ``upstream``."""
    return {
        "name": name,
        "base_url": upstream.url,
        "auth": {"type": "bearer_static", "env": "OUTPOST_TEST_SECRET"},
        "forwarding": {
            "mode": "transparent",
            "rate_limits": {"default": [{"capacity": 10000, "window_ms": 1000}]},
        },
    }


def write_provider(outpost: OutpostServer, name: str, content: dict[str, Any]) -> None:
    """Write one provider file into the server's provider directory."""
    path = outpost.provider_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))


def send_sighup(outpost: OutpostServer) -> None:
    """Signal the server's main process to reload."""
    assert outpost.process is not None
    outpost.process.send_signal(signal.SIGHUP)


def wait_for_log(outpost: OutpostServer, text: str, count: int = 1) -> None:
    """Wait up to 10 s until ``text`` appears ``count`` times in the output."""
    deadline = time.monotonic() + 10
    while outpost.output().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{outpost.output()}"
        time.sleep(0.05)


def wait_until_served(outpost: OutpostServer, target: str, expected: int) -> None:
    """Wait until several fresh connections in a row get ``expected``."""
    deadline = time.monotonic() + 10
    in_a_row = 0
    while in_a_row < 10:
        assert time.monotonic() < deadline, f"{target} never answered {expected}"
        status = outpost.get(target).status
        in_a_row = in_a_row + 1 if status == expected else 0


class TrafficLoop:
    """Sends requests on fresh connections until stopped; records every failure."""

    def __init__(self, outpost: OutpostServer, target: str) -> None:
        self.outpost = outpost
        self.target = target
        self.sent = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TrafficLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        deadline = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                status = self.outpost.get(self.target).status
            except OSError as exc:
                self.failures.append(repr(exc))
                continue
            self.sent += 1
            if status != 200:
                self.failures.append(f"status {status}")


def test_reload_under_traffic_loses_nothing(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([provider("alpha", upstream)], env=SECRET_ENV, workers=2)
    assert outpost.get("/p/beta/x").status == 400

    with TrafficLoop(outpost, "/p/alpha/items") as traffic:
        time.sleep(0.3)
        write_provider(outpost, "beta", provider("beta", upstream))
        send_sighup(outpost)
        wait_for_log(outpost, "configuration reloaded: providers alpha, beta")
        wait_until_served(outpost, "/p/beta/x", 200)

        (outpost.provider_dir / "broken.yaml").write_text("name: [\n")
        send_sighup(outpost)
        wait_for_log(outpost, "configuration reload rejected")
        time.sleep(0.3)

    assert traffic.failures == []
    assert traffic.sent > 20
    wait_until_served(outpost, "/p/beta/x", 200)
    assert outpost.get("/p/alpha/x").status == 200
    rejection = next(
        line for line in outpost.output().splitlines() if "reload rejected" in line
    )
    assert "broken.yaml:2" in rejection
    assert outpost.output().count("configuration reloaded") == 1
    assert TEST_SECRET not in outpost.output()


def test_reload_removes_provider_and_survives_bad_file(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost(
        [provider("alpha", upstream), provider("beta", upstream)], env=SECRET_ENV
    )

    (outpost.provider_dir / "beta.yaml").unlink()
    send_sighup(outpost)
    wait_for_log(outpost, "configuration reloaded: providers alpha;")
    wait_until_served(outpost, "/p/beta/x", 400)

    write_provider(outpost, "alpha", {"name": "alpha", "base_urll": upstream.url})
    send_sighup(outpost)
    wait_for_log(outpost, "configuration reload rejected")

    assert outpost.get("/p/alpha/x").status == 200
    assert outpost.process is not None
    assert outpost.process.poll() is None


def test_reload_command_signals_server(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    outpost = start_outpost([provider("alpha", upstream)], env=SECRET_ENV)
    write_provider(outpost, "beta", provider("beta", upstream))

    result = subprocess.run(
        [sys.executable, "-m", "outpost.cli.main", "reload"],
        env=outpost.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "sent SIGHUP" in result.stdout
    wait_for_log(outpost, "configuration reloaded: providers alpha, beta")
    wait_until_served(outpost, "/p/beta/x", 200)


def test_reload_command_without_server_fails(tmp_path: Any) -> None:
    pid_file = tmp_path / "missing.pid"

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "outpost.cli.main",
            "reload",
            "--pid-file",
            str(pid_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1
    assert "not found" in result.stderr
    assert str(pid_file) in result.stderr


def test_sigterm_lets_slow_request_finish(start_outpost: StartOutpost) -> None:
    arrived = threading.Event()

    def slow(request: RecordedRequest, connection: Connection) -> Reply:
        arrived.set()
        time.sleep(1.0)
        return Reply(body=b'{"slow":true}')

    upstream = RecordingUpstream(slow)
    try:
        outpost = start_outpost([provider("alpha", upstream)], env=SECRET_ENV)
        results: list[Any] = []
        client = threading.Thread(
            target=lambda: results.append(outpost.get("/p/alpha/slow"))
        )
        client.start()
        assert arrived.wait(10)

        started = time.monotonic()
        exit_code = outpost.stop()
        client.join(10)
    finally:
        upstream.close()

    assert exit_code == 0, outpost.output()
    assert len(results) == 1
    assert results[0].status == 200
    assert results[0].body == b'{"slow":true}'
    assert time.monotonic() - started < 10
    assert not (outpost.workdir / "outpost.pid").exists()


def test_second_server_on_same_pid_file_exits(
    start_outpost: StartOutpost, upstream: RecordingUpstream
) -> None:
    first = start_outpost([provider("alpha", upstream)], env=SECRET_ENV)
    second = OutpostServer(
        first.workdir / "second", [provider("alpha", upstream)], env=SECRET_ENV
    )
    second.env["OUTPOST_PID_FILE"] = str(first.workdir / "outpost.pid")

    process = subprocess.run(
        second.command(),
        env=second.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert process.returncode == 1
    assert "belongs to a running server" in process.stdout
    assert first.get("/p/alpha/x").status == 200
