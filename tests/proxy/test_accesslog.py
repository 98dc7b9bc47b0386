"""The access line: written directly to the configured stream, or logged."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from outpost.cli.logs import JsonLineFormatter
from outpost.proxy import accesslog
from outpost.proxy.accesslog import AccessRecord


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Route the "outpost" logger to a string buffer, as configure_logging does."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger("outpost")
    saved = (root.handlers[:], root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    accesslog.write_directly(handler)
    yield buffer
    accesslog.write_directly(None)
    root.handlers[:], root.level, root.propagate = saved


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record() -> AccessRecord:
    record = AccessRecord("req-1", "GET", "127.0.0.1")
    record.path = "/v1/models"
    record.query = "limit=5&cursor=abc"
    record.status = 200
    return record


def test_direct_line_is_one_json_object(stream: io.StringIO) -> None:
    _record().emit()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    line = orjson.loads(lines[0])
    assert line["request_id"] == "req-1"
    assert line["path"] == "/v1/models"
    assert line["query_params"] == ["limit", "cursor"]
    assert "abc" not in lines[0]


def test_extra_handler_gets_the_line_through_logging(stream: io.StringIO) -> None:
    extra = _Capture()
    access = logging.getLogger("outpost.access")
    access.addHandler(extra)
    try:
        _record().emit()
    finally:
        access.removeHandler(extra)

    assert len(extra.records) == 1
    assert orjson.loads(extra.records[0].getMessage())["request_id"] == "req-1"
    assert len(stream.getvalue().splitlines()) == 1


def test_level_above_info_suppresses_allowed_lines(stream: io.StringIO) -> None:
    logging.getLogger("outpost").setLevel(logging.WARNING)
    _record().emit()

    denied = _record()
    denied.decision = "deny"
    denied.emit()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert orjson.loads(lines[0])["decision"] == "deny"
