"""Logging set-up for the command line and the server workers.

Every line on stdout is one JSON object. The access logger's messages are
already JSON, so they are written as they are; other loggers get a small
envelope with time, level, logger name and message.
"""

from __future__ import annotations

import logging
import sys
import time

import orjson

from outpost.proxy.accesslog import write_directly


class JsonLineFormatter(logging.Formatter):
    """Formats records as single-line JSON objects."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "outpost.access":
            return message
        line = {
            "time": round(time.time(), 3),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        return orjson.dumps(line).decode()


def configure_logging(level: str = "INFO") -> None:
    """Send every ``outpost.*`` logger to stdout as JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger("outpost")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    write_directly(handler)
