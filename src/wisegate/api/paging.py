"""The ``limit`` query parameter of the list endpoints (1–1000, default 20), worded as the Claude API."""

from __future__ import annotations

from starlette.requests import Request

from wisegate.errors import InvalidRequest


def list_limit(request: Request, default: int = 20) -> int:
    raw = request.query_params.get("limit", str(default))
    try:
        limit = int(raw)
    except ValueError:
        raise InvalidRequest("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit: Input should be between 1 and 1000")
    return limit
