"""Rendering failures as Anthropic's error envelope (validation messages: ``wisegate.errors``)."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from wisegate.api.ratelimit import rate_limit_headers
from wisegate.errors import ApiError, MethodNotAllowed, NotFound
from wisegate.protocol.bounds import echo
from wisegate.protocol.resources import error_envelope

# The ``retry-after`` of a 529 whose cause does not say how long to wait (the local model's queue is
# full, every deployment failed without a hint): the SDKs honour the header, so clients pause
# rather than come straight back.
OVERLOADED_RETRY_AFTER = 1


def retry_after(exc: ApiError) -> str | None:
    """The ``retry-after`` header of an error: its own hint, the default for a 529, else none."""
    if exc.retry_after is not None:
        return str(max(1, round(exc.retry_after)))
    if exc.status == 529:
        return str(OVERLOADED_RETRY_AFTER)
    return None


def error_response(exc: ApiError, request_id: str | None) -> Response:
    headers: dict[str, str] = {}
    if (wait := retry_after(exc)) is not None:
        headers["retry-after"] = wait
    headers.update(rate_limit_headers(getattr(exc, "rate_limits", None)))
    headers.update(getattr(exc, "headers", None) or {})
    body = json.dumps(error_envelope(exc.type, exc.message, request_id, exc.details)).encode()
    return Response(body, status_code=exc.status, media_type="application/json", headers=headers)


def from_http_exception(exc: HTTPException, method: str, path: str) -> ApiError:
    if exc.status_code == 404:
        return NotFound(f"Not Found: no route for {method} {echo(path)}")
    if exc.status_code == 405:
        return MethodNotAllowed(f"Method Not Allowed: {method} is not supported on {path}")
    error = ApiError(exc.detail or "error")
    error.status = exc.status_code
    error.type = "invalid_request_error" if exc.status_code < 500 else "api_error"
    return error


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)
