"""``bearer_store`` through real Outpost processes, rotated with the real CLI."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StartOutpost
from tests.proxy.state_helpers import LOOPBACK_HOSTS
from tests.support.outpost import OutpostServer
from tests.support.rawhttp import RawResponse
from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply
from tests.support.valkey import ValkeyProcess

SEED = "seed-token-4f1a9c2e7b"
ROTATED = "rotated-token-83d0be51aa"
INVALID_AUTH = b'{"ok":false,"error":"invalid_auth"}'


def slack(upstream: RecordingUpstream) -> dict[str, Any]:
    return {
        "name": "slack",
        "base_url": upstream.url,
        "auth": {
            "type": "bearer_redis",
            "redis_key": "slack_token",
            "env_seed": "SLACK_SEED",
            "invalidate_on_body_codes": {
                "json_path": "$.error",
                "codes": ["invalid_auth", "token_revoked"],
            },
        },
    }


class TokenUpstream:
    """An upstream that responds by the bearer token it receives.

    A token in ``rejected`` gets 401 and one in ``revoked`` gets Slack's
    200 with ``invalid_auth``. A token in ``held`` waits for ``release``
    first, to play a slow response that arrives after a rotation.
    """

    def __init__(self) -> None:
        self.rejected: set[str] = set()
        self.revoked: set[str] = set()
        self.held: set[str] = set()
        self.arrived = threading.Event()
        self.release = threading.Event()

    def __call__(self, request: RecordedRequest, connection: Connection) -> Reply:
        token = (request.header("authorization") or "").removeprefix("Bearer ")
        if token in self.held:
            self.arrived.set()
            self.release.wait(10)
        if token in self.rejected:
            return Reply(status=401, body=b'{"error":"unauthorized"}')
        if token in self.revoked:
            return Reply(body=INVALID_AUTH)
        return Reply(body=b'{"ok":true}')


def sent_tokens(upstream: RecordingUpstream) -> list[str | None]:
    return [request.header("authorization") for request in upstream.requests]


def run_token(
    outpost: OutpostServer, store: str, *args: str, value: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run ``outpost token`` as its own process against the server's store."""
    command = [sys.executable, "-m", "outpost.cli.main", "token", *args]
    command += ["--provider", "slack", "--providers", str(outpost.provider_dir)]
    command += ["--store", store]
    return subprocess.run(
        command, input=value, capture_output=True, text=True, timeout=30, check=False
    )


def sqlite_url(outpost: OutpostServer) -> str:
    return f"sqlite:///{Path(outpost.workdir / 'state.db').resolve()}"


@pytest.fixture
def tokens(upstream: RecordingUpstream) -> TokenUpstream:
    handler = TokenUpstream()
    upstream.handler = handler
    return handler


def test_rotation_reaches_the_next_request(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    valkey: ValkeyProcess,
    tokens: TokenUpstream,
) -> None:
    args = ["--store", valkey.url]
    env = {"SLACK_SEED": SEED}
    first = start_outpost([slack(upstream)], hosts=LOOPBACK_HOSTS, env=env, args=args)
    second = start_outpost([slack(upstream)], hosts=LOOPBACK_HOSTS, env=env, args=args)
    assert first.get("/p/slack/api/auth.test").status == 200

    result = run_token(first, valkey.url, "set", value=ROTATED + "\n")
    assert result.returncode == 0, result.stderr
    shown = run_token(first, valkey.url, "get")

    assert second.get("/p/slack/api/auth.test").status == 200
    assert first.get("/p/slack/api/auth.test").status == 200
    assert sent_tokens(upstream) == [f"Bearer {SEED}"] + [f"Bearer {ROTATED}"] * 2
    assert ROTATED not in result.stdout + shown.stdout + shown.stderr
    assert f"rota… ({len(ROTATED)} characters)" in shown.stdout


def test_late_rejection_keeps_the_rotated_token(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    valkey: ValkeyProcess,
    tokens: TokenUpstream,
) -> None:
    outpost = start_outpost(
        [slack(upstream)],
        hosts=LOOPBACK_HOSTS,
        env={"SLACK_SEED": SEED},
        args=["--store", valkey.url],
    )
    tokens.held.add(SEED)
    tokens.rejected.add(SEED)
    late: list[RawResponse] = []
    slow = threading.Thread(
        target=lambda: late.append(outpost.get("/p/slack/api/chat.postMessage"))
    )
    slow.start()
    assert tokens.arrived.wait(10)

    assert run_token(outpost, valkey.url, "set", value=ROTATED).returncode == 0
    tokens.release.set()
    slow.join(10)
    after = outpost.get("/p/slack/api/chat.postMessage")

    assert late[0].status == 401
    assert late[0].body == b'{"error":"unauthorized"}'
    assert after.status == 200
    assert sent_tokens(upstream)[-1] == f"Bearer {ROTATED}"
    with valkey.client() as client:
        assert client.get("outpost:{slack_token}:val") == ROTATED.encode()


def test_rejected_token_is_deleted_once(
    start_outpost: StartOutpost,
    upstream: RecordingUpstream,
    valkey: ValkeyProcess,
    tokens: TokenUpstream,
) -> None:
    outpost = start_outpost(
        [slack(upstream)],
        hosts=LOOPBACK_HOSTS,
        env={"SLACK_SEED": SEED},
        args=["--store", valkey.url],
    )
    tokens.rejected.add(SEED)

    rejected = outpost.get("/p/slack/api/auth.test")
    missing = outpost.get("/p/slack/api/auth.test")

    assert rejected.status == 401
    assert missing.status == 502
    assert missing.error_code == "PROXY_AUTH_ERROR"
    assert b"outpost token set --provider slack" in missing.body
    assert upstream.count == 1
    assert run_token(outpost, valkey.url, "get").returncode == 1


def test_error_code_in_200_body_invalidates(
    start_outpost: StartOutpost, upstream: RecordingUpstream, tokens: TokenUpstream
) -> None:
    outpost = start_outpost(
        [slack(upstream)],
        hosts=LOOPBACK_HOSTS,
        env={"SLACK_SEED": SEED},
        args=["--log-level", "DEBUG"],
        workers=2,
    )
    tokens.revoked.add(SEED)

    revoked = outpost.get("/p/slack/api/auth.test")
    assert revoked.status == 200
    assert revoked.body == INVALID_AUTH
    assert revoked.header("content-length") == str(len(INVALID_AUTH))
    assert outpost.get("/p/slack/api/auth.test").status == 502

    store = sqlite_url(outpost)
    assert run_token(outpost, store, "set", value=ROTATED).returncode == 0
    for _ in range(4):
        assert outpost.get("/p/slack/api/auth.test").status == 200
    assert sent_tokens(upstream) == [f"Bearer {SEED}"] + [f"Bearer {ROTATED}"] * 4
    output = outpost.output()
    assert "was deleted" in output
    assert SEED not in output
    assert ROTATED not in output
