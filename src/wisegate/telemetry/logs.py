"""Structured logs: one JSON object per line, carrying the request id of the request being served."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any

from wisegate.telemetry import tracing

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_ENCODER = json.JSONEncoder(default=str)  # what json.dumps(default=str) builds anew on every call

# Set by the HTTP layer for the duration of each request (api/context.py).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    """``ts``, ``level``, ``logger``, ``msg``, ``request_id``, ``trace_id`` (when tracing is on), the
    record's ``extra`` fields, ``exc``.

    Every request logs a line, so this is on the hot path: the timestamp (whole seconds) is formatted
    once per second, and the encoder is built once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            self._second = second
        entry: dict[str, Any] = {
            "ts": self._stamp,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": request_id_var.get(),
        }
        if tracing.enabled():
            entry["trace_id"] = tracing.trace_id()
        for name, value in record.__dict__.items():
            if name not in _STANDARD:
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send wisegate's logs to stderr, as JSON lines (``fmt="json"``) or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger("wisegate")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    # Neither format shows where a call was made or from which thread or process; not collecting it
    # is the logging HOWTO's "Optimization" advice, and saves a stack walk per record (every request
    # logs one).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
