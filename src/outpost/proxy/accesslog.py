"""One JSON line per request on the ``outpost.access`` logger.

The record is filled as the request moves through the pipeline and written
once, when the response is finished. It contains query parameter names but never
their values, and never a header value, so no credential can reach it.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import unquote_plus

import orjson

access_logger = logging.getLogger("outpost.access")

# The handler that configure_logging() put on the "outpost" logger. While it
# is the only place an access line can go, emit() writes to its stream
# directly: building a LogRecord and walking the logging machinery costs
# more CPU than everything else in the line.
_direct_handler: logging.StreamHandler[Any] | None = None


def write_directly(handler: logging.StreamHandler[Any] | None) -> None:
    """Write access lines straight to ``handler``'s stream while it is the only
    handler they reach; None turns this off."""
    global _direct_handler
    _direct_handler = handler


class AccessRecord:
    """The fields of one access-log line."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "cache",
        "category",
        "client_ip",
        "decision",
        "error_code",
        "host_id",
        "method",
        "path",
        "provider",
        "query",
        "rate_limit_wait_ms",
        "reason",
        "request_id",
        "started",
        "status",
        "upstream_ms",
        "upstream_status",
    )

    def __init__(self, request_id: str, method: str, client_ip: str) -> None:
        self.started = time.perf_counter()
        self.request_id = request_id
        self.method = method
        self.client_ip = client_ip
        self.host_id: str | None = None
        self.provider: str | None = None
        self.path: str | None = None
        self.query = ""
        self.category: str | None = None
        self.decision = "allow"
        self.error_code: str | None = None
        self.reason: str | None = None
        self.status = 0
        self.upstream_status: int | None = None
        self.cache = "BYPASS"
        self.bytes_in = 0
        self.bytes_out = 0
        self.upstream_ms: float | None = None
        # Time spent in rate-limit admission (token take and any waiting);
        # None when the request never reached it.
        self.rate_limit_wait_ms: float | None = None

    def elapsed_ms(self) -> float:
        """Return milliseconds since the request arrived."""
        return (time.perf_counter() - self.started) * 1000

    def emit(self) -> None:
        """Write the line, at INFO when allowed, WARNING when denied, else ERROR."""
        if self.decision == "allow":
            level = logging.INFO
        elif self.decision == "deny":
            level = logging.WARNING
        else:
            level = logging.ERROR
        if not access_logger.isEnabledFor(level):
            return
        line = {
            "time": time.time(),
            "request_id": self.request_id,
            "host": self.host_id,
            "client_ip": self.client_ip,
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "query_params": query_param_names(self.query),
            "category": self.category,
            "decision": self.decision,
            "error": self.error_code,
            "reason": self.reason,
            "status": self.status,
            "upstream_status": self.upstream_status,
            "cache": self.cache,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "total_ms": round(self.elapsed_ms(), 3),
            "upstream_ms": None
            if self.upstream_ms is None
            else round(self.upstream_ms, 3),
            "rate_limit_wait_ms": None
            if self.rate_limit_wait_ms is None
            else round(self.rate_limit_wait_ms, 3),
        }
        text = orjson.dumps(line).decode()
        if not _write_direct(level, text):
            access_logger.log(level, text)


def _write_direct(level: int, text: str) -> bool:
    """Write ``text`` as the logging set-up would; False when it must log."""
    handler = _direct_handler
    parent = access_logger.parent
    if (
        handler is None
        or parent is None
        or access_logger.handlers
        or access_logger.filters
        or not access_logger.propagate
        or parent.handlers != [handler]
        or parent.filters
        or handler.filters
    ):
        return False
    if level < handler.level:
        return True
    handler.acquire()
    try:
        handler.stream.write(text + handler.terminator)
        handler.flush()
    except (OSError, ValueError):
        # Let the logging module report the failure its usual way.
        return False
    finally:
        handler.release()
    return True


def query_param_names(query: str) -> list[str]:
    """Return the decoded parameter names of a query string, without values."""
    if not query:
        return []
    return [unquote_plus(part.split("=", 1)[0]) for part in query.split("&") if part]
