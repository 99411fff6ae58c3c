"""The ``{data, next_page}`` page of the newer Admin API lists."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from wisegate.api.paging import query_int
from wisegate.errors import InvalidRequest
from wisegate.protocol import cursors
from wisegate.protocol.organization import PageCursor

T = TypeVar("T")


def cursor_page(
    request: Request, items: Sequence[T], render: Callable[[T], BaseModel], *, default: int | None
) -> Response:
    """``items`` from offset ``page`` (an earlier ``next_page``), ``limit`` of them (all when None)."""
    limit = query_int(request, "limit", default, 1, 1000)
    raw = request.query_params.get("page") or ""
    start = 0
    if raw:
        offset = cursors.integer(raw.removeprefix("page_")) if raw.startswith("page_") else None
        if offset is None:
            raise InvalidRequest(cursors.problem("page", raw))
        start = offset
    end = len(items) if limit is None else start + limit
    body: PageCursor[Any] = PageCursor(
        data=[render(item) for item in items[start:end]],
        next_page=f"page_{end}" if end < len(items) else None,
    )
    return Response(body.model_dump_json(), media_type="application/json")
