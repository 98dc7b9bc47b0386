"""Management documents: /metrics, /openapi.json, /docs and its static files.

The API description and the Swagger UI files ship inside the package, so
``/docs`` works with no network access and loads nothing from a CDN.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import resources

from outpost.server import metrics

METRICS_PATH = "/metrics"
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"
STATIC_PREFIX = "/docs/static/"
DOCUMENT_PATHS = frozenset({METRICS_PATH, OPENAPI_PATH, DOCS_PATH})

# Only these names are served from the static folder: a request can never
# read another file of the package, whatever its path.
STATIC_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "docs-init.js": "text/javascript; charset=utf-8",
    "LICENSE": "text/plain; charset=utf-8",
}
HTML = "text/html; charset=utf-8"
JSON = "application/json"


def is_document_path(path: str) -> bool:
    """Return whether ``path`` names a document served by :func:`load_document`."""
    return path in DOCUMENT_PATHS or path.startswith(STATIC_PREFIX)


async def load_document(path: str) -> tuple[str, bytes] | None:
    """Return the content type and body for ``path``, or None if there is none."""
    if path == METRICS_PATH:
        # This worker's counts are then exact, and other workers' are at most
        # FLUSH_INTERVAL seconds late.
        metrics.flush()
        body = await asyncio.to_thread(metrics.render)
        return metrics.CONTENT_TYPE, body
    if path == OPENAPI_PATH:
        return JSON, _package_file("openapi.json")
    if path == DOCS_PATH:
        return HTML, _package_file("docs.html")
    name = path.removeprefix(STATIC_PREFIX)
    content_type = STATIC_FILES.get(name)
    if content_type is None:
        return None
    return content_type, _package_file(f"static/{name}")


@cache
def _package_file(name: str) -> bytes:
    return resources.files("outpost.server").joinpath(name).read_bytes()
