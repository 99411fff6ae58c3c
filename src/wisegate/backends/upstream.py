"""What every HTTP upstream backend shares: the pooled client, key pools, body edits, error mapping.

One ``aiohttp.ClientSession`` per backend instance (connection pooling, keep-alive), opened in
``start()`` and closed in ``close()``; never one per request. Upstream failures become
:mod:`wisegate.errors` exceptions with the status Anthropic would answer:

- 400/404/413 keep their type and the upstream's message (the client sent something wrong);
- 429 keeps ``retry-after``; 529 (and 503) stay ``overloaded_error``; 408/504 are ``timeout_error``;
- 401/403 are the operator's problem (a wrong upstream key): the user gets 500 ``api_error`` and the
  log gets an error naming the backend — never the key.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from wisegate.errors import (
    ApiError,
    ApiInternal,
    GatewayTimeout,
    InvalidRequest,
    NotFound,
    Overloaded,
    RateLimited,
    RequestTooLarge,
)
from wisegate.telemetry import tracing

log = logging.getLogger("wisegate.upstream")


class UpstreamUnavailable(ApiInternal):
    """The upstream failed (5xx, connection refused or reset): worth a retry or another deployment."""


class UpstreamMisconfigured(ApiInternal):
    """The upstream refused the operator's credentials: another deployment may work, a retry will not."""


def new_session(options: Mapping[str, Any]) -> aiohttp.ClientSession:
    """The pooled client of one backend; ``max_connections`` bounds its sockets."""
    connector = aiohttp.TCPConnector(
        limit=int(options.get("max_connections", 256)),
        keepalive_timeout=float(options.get("keepalive_seconds", 30)),
        enable_cleanup_closed=False,
    )
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=float(options.get("connect_timeout", 10)),
        sock_read=float(options.get("read_timeout", 600)),
    )
    trace_configs = []
    if tracing.enabled():  # W3C traceparent of the current span on every upstream request
        trace_config = aiohttp.TraceConfig()
        trace_config.on_request_start.append(_inject_traceparent)
        trace_configs.append(trace_config)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=True, trace_configs=trace_configs or None
    )


async def _inject_traceparent(_session: Any, _context: Any, params: aiohttp.TraceRequestStartParams) -> None:
    carrier: dict[str, str] = {}
    tracing.inject(carrier)
    for name, value in carrier.items():
        params.headers[name] = value


class KeyPool:
    """Round-robin over an operator's upstream keys (``api_key`` or ``api_keys``)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [k for k in keys if k]
        self._cycle = itertools.cycle(self._keys) if self._keys else None

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> KeyPool:
        keys = list(options.get("api_keys") or [])
        if options.get("api_key"):
            keys.insert(0, str(options["api_key"]))
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def next(self) -> str | None:
        return next(self._cycle) if self._cycle is not None else None

    def __repr__(self) -> str:  # never print keys
        return f"KeyPool({len(self._keys)} keys)"


def rewrite_json(body: bytes, set_fields: Mapping[str, Any], drop: Sequence[str] = ()) -> bytes:
    """``body`` with top-level fields set or dropped; every other field survives as the client sent it."""
    document = json.loads(body)
    for name in drop:
        document.pop(name, None)
    document.update(set_fields)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def with_model(body: bytes, client_model: str, upstream_model: str) -> bytes:
    """The client's bytes untouched when the model id is the same upstream, else with ``model`` mapped."""
    if client_model == upstream_model:
        return body
    return rewrite_json(body, {"model": upstream_model})


def error_message(body: bytes) -> str:
    """The ``error.message`` of an Anthropic/OpenAI-style error body, else the body's text."""
    try:
        document = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500] or "(empty body)"
    if isinstance(document, dict):
        error = document.get("error", document)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(document.get("message"), str):
            return str(document["message"])
    return json.dumps(document)[:500]


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def upstream_error(backend: str, status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    """The Anthropic error for an upstream's non-2xx answer."""
    message = error_message(body)
    if status in (401, 403):
        log.error(
            "upstream %s refused Wisegate's credentials (HTTP %s): %s — check this backend's api key",
            backend,
            status,
            message,
            extra={"backend": backend, "upstream_status": status},
        )
        return UpstreamMisconfigured(
            "The upstream provider refused this gateway's credentials; the operator has to fix the "
            "backend configuration (details are in the server's logs)."
        )
    if status == 429:
        return RateLimited(message, retry_after=retry_after_of(headers))
    if status in (503, 529):
        return Overloaded(message, retry_after=retry_after_of(headers))
    if status in (408, 504):
        return GatewayTimeout(message)
    if status == 413:
        return RequestTooLarge(message)
    if status == 404:
        return NotFound(message)
    if status == 402:
        log.error("upstream %s answered 402 (billing): %s", backend, message, extra={"backend": backend})
        return UpstreamMisconfigured("The upstream provider refused the request for billing reasons.")
    if 400 <= status < 500:
        return InvalidRequest(message)
    log.warning("upstream %s failed with HTTP %s: %s", backend, status, message, extra={"backend": backend})
    return UpstreamUnavailable(f"The upstream provider failed (HTTP {status}): {message}")


def connection_error(backend: str, exc: BaseException) -> ApiError:
    """The Anthropic error for a transport failure before any answer."""
    if isinstance(exc, TimeoutError):
        log.warning("upstream %s timed out", backend, extra={"backend": backend})
        return GatewayTimeout(f"The upstream provider did not answer in time ({backend}).")
    log.warning("upstream %s unreachable: %r", backend, exc, extra={"backend": backend})
    return UpstreamUnavailable(f"The upstream provider could not be reached ({backend}).")


def is_retryable(exc: BaseException) -> bool:
    """Failures another attempt may cure: 429, 529, 5xx, timeouts, unreachable upstreams."""
    return isinstance(exc, RateLimited | Overloaded | GatewayTimeout | UpstreamUnavailable)


def is_fallback(exc: BaseException) -> bool:
    """Failures another deployment may cure, even though the same one will not."""
    return is_retryable(exc) or isinstance(exc, UpstreamMisconfigured | NotFound)
