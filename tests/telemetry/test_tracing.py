"""OpenTelemetry tracing, checked with the SDK's in-memory exporter: a span per request with its
model, workspace and request id, admission/backend/settlement children, the client's trace
continued, ``traceparent`` sent upstream, and the trace id in JSON log lines."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.backends.fakes import FakeUpstream, run_fake
from tests.backends.test_anthropic_upstream import MESSAGE_JSON, MODEL, upstream_settings
from tests.conftest import SCRIPTED_MODEL, LiveServer, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.telemetry import tracing
from wisegate.telemetry.logs import JsonFormatter

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"


def finished(exporter: InMemorySpanExporter, *names: str) -> dict[str, ReadableSpan]:
    """The finished spans by name, once ``names`` are among them: a request's span ends after its
    response has been sent, so the client may read before the server has ended it."""
    deadline = time.monotonic() + 10
    while True:
        spans = {s.name: s for s in exporter.get_finished_spans()}
        if set(names) <= spans.keys() or time.monotonic() > deadline:
            return spans
        time.sleep(0.01)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    tracing.configure(True, exporter=spans)
    try:
        yield spans
    finally:
        tracing.configure(False)


@pytest.fixture
def traced(exporter: InMemorySpanExporter, tmp_path: Path) -> Iterator[LiveServer]:
    yield from serve(scripted_settings(tmp_path), backends={"scripted": ScriptedBackend()})


def test_a_request_is_a_span_with_admission_backend_and_settlement_children(
    traced: LiveServer, exporter: InMemorySpanExporter
) -> None:
    raw = traced.client(default_headers={"traceparent": TRACEPARENT}).messages.with_raw_response.create(
        model=SCRIPTED_MODEL, max_tokens=20, messages=[{"role": "user", "content": "a b c"}]
    )
    request_id = raw.headers["request-id"]
    spans = finished(exporter, "POST /v1/messages")
    root = spans["POST /v1/messages"]
    assert format(root.context.trace_id, "032x") == CLIENT_TRACE  # the client's trace continues
    assert root.parent is not None and format(root.parent.span_id, "016x") == "00f067aa0ba902b7"
    assert root.attributes is not None
    assert root.attributes["request_id"] == request_id
    assert root.attributes["model"] == SCRIPTED_MODEL
    assert str(root.attributes["workspace_id"]).startswith("wrkspc_")
    assert root.attributes["http.response.status_code"] == 200
    for name in ("admission", "backend", "settlement"):
        child = spans[name]
        assert child.context.trace_id == root.context.trace_id
        assert child.parent is not None and child.parent.span_id == root.context.span_id, name
    backend = spans["backend"].attributes
    assert backend is not None and backend["output_tokens"] == 3 and backend["backend"] == "scripted"


def test_json_logs_carry_the_trace_id(exporter: InMemorySpanExporter) -> None:
    formatter = JsonFormatter()
    record = logging.makeLogRecord({"name": "wisegate.x", "msg": "hello", "levelname": "INFO"})
    assert json.loads(formatter.format(record))["trace_id"] is None  # no span current
    with tracing.span("work"):
        line = json.loads(formatter.format(record))
    (span,) = exporter.get_finished_spans()
    assert line["trace_id"] == format(span.context.trace_id, "032x")
    tracing.configure(False)
    assert "trace_id" not in json.loads(formatter.format(record))  # off: not even the key


@pytest.fixture
def upstream(exporter: InMemorySpanExporter, tmp_path: Path) -> Iterator[tuple[LiveServer, FakeUpstream]]:
    for fake in run_fake(FakeUpstream()):
        for server in serve(upstream_settings(tmp_path, fake.base_url)):
            yield server, fake


def test_upstream_calls_carry_the_traceparent_of_the_upstream_span(
    upstream: tuple[LiveServer, FakeUpstream], exporter: InMemorySpanExporter
) -> None:
    server, fake = upstream
    fake.answer(body=MESSAGE_JSON)
    server.client(default_headers={"traceparent": TRACEPARENT}).messages.create(
        model=MODEL, max_tokens=2048, messages=[{"role": "user", "content": "Hi"}]
    )
    sent = fake.seen[-1].headers["traceparent"]
    _, trace_id, span_id, _ = sent.split("-")
    assert trace_id == CLIENT_TRACE
    spans = finished(exporter, "upstream")
    assert format(spans["upstream"].context.span_id, "016x") == span_id


def test_tracing_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    with pytest.raises(tracing.TracingUnavailable, match=r"pip install 'wisegate\[tracing\]'"):
        tracing.configure(True)
    assert not tracing.enabled()
