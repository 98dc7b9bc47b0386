"""Outpost refuses to share its port with a socket that is already bound."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from outpost.server.runner import EXIT_ALREADY_RUNNING, ensure_port_free
from outpost.server.serve import bind_listener


def test_free_port_passes() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]

    ensure_port_free("127.0.0.1", port)


def test_reuseport_listener_is_detected() -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        with pytest.raises(SystemExit) as caught:
            ensure_port_free("127.0.0.1", port)

    assert caught.value.code == EXIT_ALREADY_RUNNING


def test_closed_connections_leave_port_free() -> None:
    # A connection the server closed first stays in TIME_WAIT for about a
    # minute after the server stops. A restart in that time must still work.
    listener = bind_listener("127.0.0.1", 0)
    port = listener.getsockname()[1]
    listener.setblocking(True)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        accepted, _ = listener.accept()
        accepted.close()
        client.recv(1)
    listener.close()

    ensure_port_free("127.0.0.1", port)


def test_serve_exits_when_port_taken(tmp_path: Path) -> None:
    providers = tmp_path / "providers"
    providers.mkdir()
    (providers / "p.yaml").write_text(
        "name: p\nbase_url: http://127.0.0.1:9\nauth: {type: none}\n"
    )
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "outpost.cli.main",
                "serve",
                "--providers",
                str(providers),
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert result.returncode == EXIT_ALREADY_RUNNING
    assert f"port {port} on 127.0.0.1 is already in use" in result.stdout
