"""The ``limit`` query parameter of the list endpoints (1–1000, default 20), worded as the Claude API."""

from __future__ import annotations

from starlette.requests import Request

from wisegate.errors import InvalidRequest
from wisegate.protocol.numbers import ascii_integer


def list_limit(request: Request, default: int = 20) -> int:
    limit = ascii_integer(request.query_params.get("limit", str(default)))
    if limit is None:
        raise InvalidRequest("limit: Input should be a valid integer")
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit: Input should be between 1 and 1000")
    return limit
