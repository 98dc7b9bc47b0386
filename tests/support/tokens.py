"""A real OAuth 2.0 token endpoint on loopback, for the minting auth schemes.

It runs on :class:`~tests.support.upstream.RecordingUpstream` (threaded,
raw HTTP/1.1), so every token request is recorded byte for byte. It checks
client authentication (``client_secret_basic`` or ``client_secret_post``),
serves the ``client_credentials`` and ``refresh_token`` grants, rotates
refresh tokens when configured to, and can fail or respond slowly on
request.
"""

from __future__ import annotations

import base64
import threading
import time
from urllib.parse import parse_qs, unquote

import orjson

from tests.support.upstream import Connection, RecordedRequest, RecordingUpstream, Reply

TOKEN_PATH = "/oauth/token"


class TokenEndpoint:
    """An OAuth 2.0 authorization server's token endpoint, and nothing else."""

    def __init__(
        self,
        client_id: str = "outpost-client",
        client_secret: str = "cs_TEST_SECRET_7d1e",  # noqa: S107 (test value)
        *,
        expires_in: int | None = 3600,
        delay: float = 0.0,
        rotate_refresh_tokens: bool = False,
        refresh_tokens: tuple[str, ...] = (),
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.expires_in = expires_in
        self.delay = delay
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.valid_refresh_tokens = set(refresh_tokens)
        self.fail_next = 0
        self.issued: list[str] = []
        self.grants: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.server = RecordingUpstream(self._handle)

    @property
    def url(self) -> str:
        """Return the token URL."""
        return self.server.url + TOKEN_PATH

    @property
    def calls(self) -> int:
        """Return how many token requests arrived, successful or not."""
        return self.server.count

    def close(self) -> None:
        """Stop the server."""
        self.server.close()

    def _handle(self, request: RecordedRequest, connection: Connection) -> Reply:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return _json(503, {"error": "temporarily_unavailable"})
            return self._answer(request)

    def _answer(self, request: RecordedRequest) -> Reply:
        if request.method != "POST" or request.path != TOKEN_PATH:
            return _json(404, {"error": "not_found"})
        fields = {
            name: values[0] for name, values in parse_qs(request.body.decode()).items()
        }
        self.grants.append(fields)
        if not self._client_authenticated(request, fields):
            return _json(401, {"error": "invalid_client"})

        grant = fields.get("grant_type")
        body: dict[str, object] = {"token_type": "Bearer"}
        if grant == "refresh_token":
            presented = fields.get("refresh_token", "")
            if presented not in self.valid_refresh_tokens:
                return _json(400, {"error": "invalid_grant"})
            if self.rotate_refresh_tokens:
                self.valid_refresh_tokens.discard(presented)
                rotated = f"rtok{len(self.issued) + 1}-R4WV"
                self.valid_refresh_tokens.add(rotated)
                body["refresh_token"] = rotated
        elif grant != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})

        token = f"atok{len(self.issued) + 1}-Q7ZX"
        self.issued.append(token)
        body["access_token"] = token
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return _json(200, body)

    def _client_authenticated(
        self, request: RecordedRequest, fields: dict[str, str]
    ) -> bool:
        header = request.header("authorization")
        if header is not None and header.startswith("Basic "):
            pair = base64.b64decode(header[6:]).decode()
            client_id, _, secret = pair.partition(":")
            client_id, secret = unquote(client_id), unquote(secret)
        else:
            client_id = fields.get("client_id", "")
            secret = fields.get("client_secret", "")
        return client_id == self.client_id and secret == self.client_secret


def _json(status: int, body: dict[str, object]) -> Reply:
    return Reply(
        status=status,
        headers=[("Content-Type", "application/json"), ("Cache-Control", "no-store")],
        body=orjson.dumps(body),
    )
