"""OpenTelemetry tracing, an optional extra (``pip install 'wisegate[tracing]'``), off by default.

When on, every HTTP request is a span (its model, workspace and request id as attributes; a W3C
``traceparent`` from the client continues the client's trace) with children for admission, the
backend or upstream call and settlement; upstream calls carry ``traceparent`` on; JSON log lines
carry ``trace_id``. When off, every function here returns at once and nothing of OpenTelemetry is
imported.

Like logging, tracing is set up once per process (``configure``), so the tracer is held here rather
than passed through every room: the spans of one request are opened in the HTTP layer, the domain
and the backends.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

_NOTHING: AbstractContextManager[None] = nullcontext()


class TracingUnavailable(RuntimeError):
    """Tracing was asked for but the ``tracing`` extra is not installed."""


class _Tracing:
    """The process's tracer, or None while tracing is off."""

    def __init__(self) -> None:
        self.tracer: Any = None
        self.provider: Any = None


_TRACING = _Tracing()


def configure(
    enabled: bool,
    *,
    endpoint: str | None = None,
    sample_ratio: float = 1.0,
    service_name: str = "wisegate",
    exporter: Any = None,
) -> None:
    """Turn tracing on (spans to ``exporter``, else OTLP/HTTP at ``endpoint`` or the standard
    ``OTEL_EXPORTER_OTLP_*`` variables) or off. Raises :class:`TracingUnavailable` without the extra."""
    shutdown()
    if not enabled:
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
    except ImportError as exc:
        raise TracingUnavailable(
            "WISEGATE_TRACING is on but OpenTelemetry is not installed: pip install 'wisegate[tracing]'"
        ) from exc
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBasedTraceIdRatio(sample_ratio),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingUnavailable(
                "WISEGATE_TRACING is on but the OTLP exporter is missing: pip install 'wisegate[tracing]'"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    _TRACING.provider = provider
    _TRACING.tracer = provider.get_tracer("wisegate")


def shutdown() -> None:
    """Flush and stop the exporter (at process exit, or before ``configure`` runs again)."""
    if _TRACING.provider is not None:
        _TRACING.provider.shutdown()
    _TRACING.provider = _TRACING.tracer = None


def enabled() -> bool:
    return _TRACING.tracer is not None


def start_request(name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]) -> Any:
    """A server span for one HTTP request, continuing the client's ``traceparent`` if it sent one;
    None when tracing is off. The caller ends it (``finish_request``)."""
    tracer = _TRACING.tracer
    if tracer is None:
        return None
    from opentelemetry import context, propagate, trace

    parent = propagate.extract(headers)
    span = tracer.start_span(name, context=parent, kind=trace.SpanKind.SERVER, attributes=dict(attributes))
    token = context.attach(trace.set_span_in_context(span, parent))
    return span, token


def finish_request(
    handle: Any, attributes: Mapping[str, Any], error: str | None = None, name: str | None = None
) -> None:
    if handle is None:
        return
    from opentelemetry import context, trace

    span, token = handle
    if name is not None:
        span.update_name(name)
    for name, value in attributes.items():
        if value is not None:
            span.set_attribute(name, value)
    if error is not None:
        span.set_status(trace.Status(trace.StatusCode.ERROR, error))
    span.end()
    context.detach(token)


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A child span of the current one, current while the block runs; nothing when tracing is off
    (a shared null context: this is on every request's path)."""
    tracer = _TRACING.tracer
    if tracer is None:
        return _NOTHING
    cm: AbstractContextManager[Any] = tracer.start_as_current_span(name, attributes=attributes)
    return cm


def start_span(name: str, **attributes: Any) -> Any:
    """A child span of the current one that outlives the block that starts it (a stream: ended by
    ``end_span`` when the stream settles); None when tracing is off."""
    tracer = _TRACING.tracer
    return None if tracer is None else tracer.start_span(name, attributes=attributes)


def current(span_: Any) -> AbstractContextManager[Any]:
    """Make ``span_`` (from ``start_span``) the current span while the block runs."""
    if span_ is None:
        return _NOTHING
    from opentelemetry import trace

    cm: AbstractContextManager[Any] = trace.use_span(span_, end_on_exit=False)
    return cm


def end_span(span_: Any, error: str | None = None, **attributes: Any) -> None:
    if span_ is None:
        return
    from opentelemetry import trace

    for name, value in attributes.items():
        if value is not None:
            span_.set_attribute(name, value)
    if error is not None:
        span_.set_status(trace.Status(trace.StatusCode.ERROR, error))
    span_.end()


def inject(headers: MutableMapping[str, str]) -> None:
    """Add ``traceparent`` (and ``tracestate``) of the current span to outgoing request headers."""
    if _TRACING.tracer is None:
        return
    from opentelemetry import propagate

    propagate.inject(headers)


def trace_id() -> str | None:
    """The current trace id as 32 hex digits, for log lines; None when tracing is off or no span."""
    if _TRACING.tracer is None:
        return None
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
