"""/openapi.json and /docs: a valid description, local assets, a real render."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from typing import Any

import pytest
from openapi_spec_validator import validate

from outpost import errors
from outpost.server import app as server_app
from tests.conftest import StartOutpost
from tests.support.outpost import OutpostServer

ASSET_TYPES = {
    "/docs/static/swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "/docs/static/swagger-ui.css": "text/css; charset=utf-8",
    "/docs/static/docs-init.js": "text/javascript; charset=utf-8",
    "/docs/static/LICENSE": "text/plain; charset=utf-8",
}


def load_openapi() -> dict[str, Any]:
    """Return the API description shipped in the package."""
    text = resources.files("outpost.server").joinpath("openapi.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def proxy_error_codes() -> set[str]:
    """Return the code of every ProxyError subclass Outpost defines."""
    codes = set()
    pending: list[type[errors.ProxyError]] = [errors.ProxyError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    return codes


def test_openapi_document_is_valid() -> None:
    validate(load_openapi())


def test_openapi_lists_every_error_code() -> None:
    # Importing the app registers the errors it defines itself.
    assert server_app.WebSocketUnsupportedError.code in proxy_error_codes()
    schema = load_openapi()["components"]["schemas"]["ErrorCode"]

    assert set(schema["enum"]) == proxy_error_codes()
    for code in schema["enum"]:
        assert f"`{code}`" in schema["description"]


def test_openapi_describes_proxy_contract() -> None:
    document = load_openapi()
    headers = document["components"]["headers"]

    assert "/p/{provider}/{path}" in document["paths"]
    header_route = document["paths"]["/{path}"]["parameters"]
    assert any(item.get("name") == "X-Provider" for item in header_route)
    for name in ("X-Proxy-Provider", "X-Proxy-Cache", "X-Request-Id", "Server-Timing"):
        assert name in headers
    for path in ("/healthz", "/readyz", "/providers", "/metrics", "/docs"):
        assert path in document["paths"]


def test_openapi_served_as_shipped(
    start_outpost: StartOutpost,
) -> None:
    outpost = start_outpost([])

    response = outpost.get("/openapi.json")

    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.json() == load_openapi()


def test_docs_page_loads_only_local_assets(start_outpost: StartOutpost) -> None:
    outpost = start_outpost([])

    page = outpost.get("/docs")
    html = page.body.decode()
    references = re.findall(r'(?:src|href)="([^"]+)"', html)

    assert page.status == 200
    assert page.header("content-type") == "text/html; charset=utf-8"
    assert "default-src 'self'" in (page.header("content-security-policy") or "")
    assert set(references) == {
        "/docs/static/swagger-ui.css",
        "/docs/static/swagger-ui-bundle.js",
        "/docs/static/docs-init.js",
    }
    for path, content_type in ASSET_TYPES.items():
        asset = outpost.get(path)
        assert asset.status == 200, path
        assert asset.header("content-type") == content_type
        assert len(asset.body) > 0


def test_docs_static_serves_only_listed_files(start_outpost: StartOutpost) -> None:
    outpost = start_outpost([])

    for path in (
        "/docs/static/swagger-ui-bundle.js.map",
        "/docs/static/../openapi.json",
        "/docs/static/%2e%2e/docs.html",
        "/docs/static/",
    ):
        response = outpost.get(path)
        assert response.status in (400, 404), path
        assert response.error_code in ("PROXY_NOT_FOUND", "PROXY_BAD_REQUEST"), path


def test_docs_denied_to_unknown_hosts(start_outpost: StartOutpost) -> None:
    hosts = {"hosts": [{"id": "elsewhere", "cidrs": ["192.0.2.0/24"]}]}
    outpost = start_outpost([], hosts=hosts)

    for path in ("/docs", "/openapi.json", "/docs/static/swagger-ui.css"):
        assert outpost.get(path).status == 403, path


def render_dom(outpost: OutpostServer, browser: str) -> str:
    """Return the DOM of /docs after its scripts ran in headless Chromium."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",
                "--dump-dom",
                f"{outpost.url}/docs",
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="chromium is not installed; .ci/run installs it",
)
def test_docs_render_in_chromium(start_outpost: StartOutpost) -> None:
    outpost = start_outpost([])
    browser = shutil.which("chromium")
    assert browser is not None

    dom = render_dom(outpost, browser)

    assert 'class="swagger-ui"' in dom
    assert "Capability-based credential proxy" in dom
    assert "/p/{provider}/{path}" in dom
    assert "/providers" in dom
    requested = {line["path"] for line in outpost.access_lines()}
    assert {"/docs", "/openapi.json", "/docs/static/swagger-ui-bundle.js"} <= requested
