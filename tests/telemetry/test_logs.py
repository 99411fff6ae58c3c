"""The JSON log lines: fields, the request id, extras, exceptions, and the per-second timestamp."""

from __future__ import annotations

import json
import logging
import sys
import time

import pytest

from wisegate.telemetry.logs import JsonFormatter, configure, request_id_var


def record(created: float, **extra: object) -> logging.LogRecord:
    item = logging.getLogger("wisegate.http").makeRecord(
        "wisegate.http", logging.INFO, __file__, 1, "request %s", ("done",), None, extra=extra
    )
    item.created = created
    return item


def test_a_line_carries_the_fields_the_request_id_and_the_extras() -> None:
    token = request_id_var.set("req_01abc")
    try:
        line = json.loads(JsonFormatter().format(record(time.time(), status=200, ms=1.5, obj=object)))
    finally:
        request_id_var.reset(token)
    assert list(line)[:5] == ["ts", "level", "logger", "msg", "request_id"]
    assert line["level"] == "info" and line["logger"] == "wisegate.http" and line["msg"] == "request done"
    assert line["request_id"] == "req_01abc"
    assert line["status"] == 200 and line["ms"] == 1.5
    assert line["obj"] == str(object)  # anything else is written as its str()
    assert "pathname" not in line and "exc" not in line


def test_the_timestamp_follows_the_record_second_by_second() -> None:
    formatter = JsonFormatter()
    base = 1_790_000_000.0
    stamps = [json.loads(formatter.format(record(base + dt)))["ts"] for dt in (0.1, 0.9, 1.2, 0.5)]
    expected = [time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(base + dt)) for dt in (0.1, 0.9, 1.2, 0.5)]
    assert stamps == expected
    assert stamps[0] == stamps[1] != stamps[2]


def test_an_exception_is_included() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        item = logging.getLogger("wisegate.x").makeRecord(
            "wisegate.x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(item))
    assert line["level"] == "error" and line["request_id"] is None
    assert "ValueError: boom" in line["exc"]


def test_configure_writes_json_lines_without_collecting_call_sites(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    root = logging.getLogger("wisegate")
    saved = (root.handlers[:], root.level, root.propagate)
    try:
        configure("INFO", "json")
        assert logging._srcfile is None and not logging.logThreads and not logging.logProcesses
        logging.getLogger("wisegate.http").info("request", extra={"status": 204})
        logging.getLogger("wisegate.http").debug("not at INFO")
        lines = capsys.readouterr().err.splitlines()
        assert len(lines) == 1
        assert json.loads(lines[0])["status"] == 204
    finally:
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = flags
        root.handlers[:], root.propagate = saved[0], saved[2]
        root.setLevel(saved[1])
