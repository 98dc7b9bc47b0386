"""Catalogue files served by a real Outpost process against a loopback upstream.

Each file is loaded as shipped, with only ``base_url`` moved to the recorder
(its path prefix kept) and ``enabled`` set, so the test sees the headers the
vendor would receive and the sensitive flags a caller would meet.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from outpost.catalogue import catalogue_files
from tests.conftest import TEST_SECRET
from tests.support.outpost import OutpostServer
from tests.support.rawhttp import RawResponse, request_bytes, send_raw
from tests.support.upstream import RecordingUpstream

VENDORS = ["gemini", "linear", "notion", "twilio", "gitlab", "tradier", "anthropic"]
READER = "127.0.0.1"
TRADER = "127.0.0.2"
HOSTS = {
    "hosts": [
        {"id": "reader", "cidrs": [f"{READER}/32"], "can_call_sensitive": False},
        {"id": "trader", "cidrs": [f"{TRADER}/32"], "can_call_sensitive": True},
    ]
}


def local_copy(name: str, upstream: RecordingUpstream) -> dict[str, Any]:
    path = next(path for path in catalogue_files() if path.stem == name)
    document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    prefix = urlsplit(document["base_url"]).path
    document["base_url"] = upstream.url + prefix
    document["enabled"] = True
    return document


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OutpostServer, RecordingUpstream]]:
    """One Outpost for the whole module; tests compare request counts."""
    upstream = RecordingUpstream()
    providers = [local_copy(name, upstream) for name in VENDORS]
    variables = {
        "GEMINI_API_KEY",
        "LINEAR_API_KEY",
        "NOTION_TOKEN",
        "TWILIO_AUTH_TOKEN",
        "GITLAB_TOKEN",
        "TRADIER_ACCESS_TOKEN",
        "ANTHROPIC_API_KEY",
    }
    env = {variable: TEST_SECRET for variable in variables}
    env["TWILIO_ACCOUNT_SID"] = "AC0001"
    workdir = tmp_path_factory.mktemp("catalogue")
    server = OutpostServer(workdir, providers, hosts=HOSTS, env=env).start()
    yield server, upstream
    server.stop()
    upstream.close()


@pytest.fixture
def outpost(served: tuple[OutpostServer, RecordingUpstream]) -> OutpostServer:
    return served[0]


@pytest.fixture
def upstream(served: tuple[OutpostServer, RecordingUpstream]) -> RecordingUpstream:
    # Replaces the suite-wide fixture of the same name, because one recorder
    # serves every test in this module.
    return served[1]


def call(
    outpost: OutpostServer, method: str, target: str, source: str = READER
) -> RawResponse:
    return send_raw(
        outpost.port, request_bytes(method, target, None, b""), source=source
    )


def test_gemini_key_in_goog_header(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    response = call(outpost, "GET", "/p/gemini/v1beta/models")

    assert response.status == 200
    assert upstream.requests[-1].header("x-goog-api-key") == TEST_SECRET
    assert upstream.requests[-1].header("authorization") is None


def test_linear_key_without_bearer(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    response = call(outpost, "POST", "/p/linear/graphql", source=TRADER)

    assert response.status == 200
    assert upstream.requests[-1].header("authorization") == TEST_SECRET


def test_linear_is_sensitive_for_reader(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    before = upstream.count
    response = call(outpost, "POST", "/p/linear/graphql")

    assert response.status == 403
    assert upstream.count == before


def test_notion_bearer_and_version(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    response = call(outpost, "GET", "/p/notion/v1/users")

    assert response.status == 200
    request = upstream.requests[-1]
    assert request.header("authorization") == f"Bearer {TEST_SECRET}"
    assert request.header("notion-version") == "2022-06-28"


def test_twilio_basic_auth_with_sid(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    response = call(outpost, "GET", "/p/twilio/2010-04-01/Accounts/AC0001.json")

    assert response.status == 200
    pair = base64.b64encode(f"AC0001:{TEST_SECRET}".encode()).decode()
    assert upstream.requests[-1].header("authorization") == f"Basic {pair}"


def test_gitlab_private_token_and_prefix(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    response = call(outpost, "GET", "/p/gitlab/projects?owned=true")

    assert response.status == 200
    request = upstream.requests[-1]
    assert request.target == "/api/v4/projects?owned=true"
    assert request.header("private-token") == TEST_SECRET


def test_gitlab_denies_ci_variables(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    before = upstream.count
    response = call(outpost, "GET", "/p/gitlab/projects/42/variables", source=TRADER)

    assert response.status == 403
    assert upstream.count == before


def test_anthropic_key_header(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    response = call(outpost, "POST", "/p/anthropic/v1/messages")

    assert response.status == 200
    assert upstream.requests[-1].header("x-api-key") == TEST_SECRET


def test_tradier_quotes_open_orders_sensitive(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    before = upstream.count
    quotes = call(outpost, "GET", "/p/tradier/markets/quotes?symbols=AAPL")
    order = call(outpost, "POST", "/p/tradier/accounts/VA1/orders")

    assert quotes.status == 200
    assert upstream.requests[-1].target == "/v1/markets/quotes?symbols=AAPL"
    assert order.status == 403
    assert upstream.count == before + 1


def test_tradier_order_allowed_for_trader(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    response = call(outpost, "DELETE", "/p/tradier/accounts/VA1/orders/7", TRADER)

    assert response.status == 200
    assert upstream.requests[-1].target == "/v1/accounts/VA1/orders/7"


def test_tradier_unlisted_path_is_404(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    before = upstream.count
    response = call(outpost, "GET", "/p/tradier/accounts/VA1", source=TRADER)

    assert response.status == 404
    assert upstream.count == before


def test_tradier_denies_watchlists(
    outpost: OutpostServer, upstream: RecordingUpstream
) -> None:
    before = upstream.count
    response = call(outpost, "GET", "/p/tradier/watchlists", source=TRADER)

    assert response.status == 403
    assert upstream.count == before
