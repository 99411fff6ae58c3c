"""The outermost ASGI middleware: request ids, response headers, error envelopes, request logs,
metrics and the request's trace span.

Every response gets ``request-id`` and ``anthropic-organization-id``; every exception becomes an
Anthropic error envelope (500 ``api_error`` with no traceback for unexpected ones), logged with the
request id. The hottest endpoints (``direct``: method and exact path) are called from here without
the router and Starlette's exception middleware, which would render their errors the same way.

A 4xx's log line also carries the error's ``error_type`` and message (``error``), read back from the
envelope the client got — never the key or the request body.

Metrics label a request with its route's path template (``unmatched`` for an unknown path, so a
scanner cannot grow the label set), its status and its model when the handler named a configured one
(``request.state.model``; any other name reads ``other``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wisegate.api.encodings import compressed_body
from wisegate.api.errors import error_response, from_http_exception
from wisegate.errors import ApiError
from wisegate.protocol.messages import new_id
from wisegate.telemetry import metrics, tracing
from wisegate.telemetry.logs import request_id_var

log = logging.getLogger("wisegate.http")

_ERROR_BODY_BYTES = 64 * 1024
_ERROR_CHARS = 1000
_PROBES = frozenset({"/health", "/ready", "/metrics"})  # logged at debug level: probes run every second


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        organization_id: Callable[[], str | None],
        direct: Mapping[tuple[str, str], ASGIApp] | None = None,
        route_names: Mapping[Any, str] | None = None,
        model_names: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self._organization_id = organization_id
        self._direct = dict(direct or {})
        self._route_names: dict[Any, str] = dict(route_names or {})
        self._model_names: dict[str, str] = dict(model_names or {})
        # The labelled children of the request metrics, by (route, status, model): labels() takes a
        # lock and builds a key on every call.
        self._series: dict[tuple[str, int, str], tuple[Any, Any, Any]] = {}

    def _route_of(self, scope: Scope, direct: bool) -> str:
        if direct:
            return str(scope["path"])
        name = self._route_names.get(scope.get("endpoint"))
        if name is not None:
            return name
        return "/console" if str(scope["path"]).startswith("/console") else "unmatched"

    def _model_of(self, state: dict[str, Any]) -> str:
        model = state.get("model")
        if not model:
            return ""
        return self._model_names.get(model, "other")

    def _observe(self, route: str, status: int, model: str, seconds: float, first_byte: float | None) -> None:
        key = (route, status, model)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                metrics.REQUESTS.labels(route, str(status), model),
                metrics.REQUEST_SECONDS.labels(route, model),
                metrics.FIRST_BYTE_SECONDS.labels(route, model),
            )
        series[0].inc()
        series[1].observe(seconds)
        if first_byte is not None:
            series[2].observe(first_byte)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_id("req")
        token = request_id_var.set(request_id)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 0
        first_byte: float | None = None
        streaming = False
        span = None
        if tracing.enabled():
            span = tracing.start_request(
                f"{scope['method']} {scope['path']}",
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                {"http.request.method": scope["method"], "url.path": scope["path"], "request_id": request_id},
            )

        client_error: dict[str, str] | None = None  # a 4xx envelope's type and message, once read

        async def send_with_headers(message: Message) -> None:
            nonlocal status, first_byte, streaming, client_error
            if message["type"] == "http.response.start":
                status = message["status"]
                if 400 <= status < 500 and _is_json(message.get("headers", [])):
                    client_error = {}
                org = state.get("organization_id") or self._organization_id()
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                if org:
                    headers.append((b"anthropic-organization-id", org.encode()))
                message["headers"] = headers
                for name, value in headers:
                    if name == b"content-type" and value.startswith(b"text/event-stream"):
                        streaming = True
                        metrics.STREAMS.inc()
                        break
            elif first_byte is None and message.get("body"):
                first_byte = time.perf_counter() - started
                if client_error == {}:
                    client_error = _error_of(message["body"])
            await send(message)

        refused = compressed_body(scope["headers"])
        app = (
            error_response(refused, request_id)
            if refused
            else self._direct.get((scope["method"], scope["path"]))
        )
        metrics.IN_FLIGHT.inc()
        try:
            await (app or self.app)(scope, receive, send_with_headers)
        except ClientDisconnect:
            status = status or 499  # the client left before its request was read: nobody to answer
            log.info("client disconnected before its request was read")  # routine: no traceback
        except Exception as exc:
            if status:
                log.exception("failure after the response started")
                raise
            if isinstance(exc, HTTPException):
                failure: ApiError = from_http_exception(exc, scope["method"], scope["path"])
            elif isinstance(exc, ApiError):
                failure = exc
            else:
                log.exception("unhandled error")
                failure = ApiError(
                    "Internal server error. The request id identifies it in the server's logs."
                )
            await error_response(failure, request_id)(scope, receive, send_with_headers)
        finally:
            metrics.IN_FLIGHT.dec()
            if streaming:
                metrics.STREAMS.dec()
            seconds = time.perf_counter() - started
            route = self._route_of(scope, app is not None)
            model = self._model_of(state)
            self._observe(route, status, model, seconds, first_byte)
            log.log(
                logging.DEBUG if scope["path"] in _PROBES else logging.INFO,
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                    **(client_error or {}),
                },
            )
            if span is not None:
                tracing.finish_request(
                    span,
                    {
                        "http.route": route,
                        "http.response.status_code": status,
                        "model": state.get("model"),
                        "workspace_id": state.get("workspace_id"),
                    },
                    error=f"HTTP {status}" if status >= 500 else None,
                    name=f"{scope['method']} {route}",
                )
            request_id_var.reset(token)


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"content-type" and value.startswith(b"application/json") for name, value in headers)


def _error_of(body: bytes) -> dict[str, str]:
    """``error_type`` and ``error`` (the message) of an error envelope (Anthropic's or OpenAI's), for
    the request's log line: a 4xx is diagnosable from the log. Nothing of the request is logged."""
    try:
        envelope = json.loads(body[:_ERROR_BODY_BYTES])
        inner = envelope["error"]
        return {"error_type": str(inner.get("type")), "error": str(inner["message"])[:_ERROR_CHARS]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
