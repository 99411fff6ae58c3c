"""URLs that name nothing: checked once, before routing, for every endpoint.

A control character (NUL included) in the path cannot be part of any id we issue, so such a path is a
404 — answered here rather than by a lookup PostgreSQL would refuse (it cannot compare text with a NUL
byte; SQLite can). A control character in a query parameter (``after_id``, report filters…) is a 400
naming the parameter. Both databases answer alike.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from wisegate.api.errors import error_response
from wisegate.errors import ApiError, InvalidRequest, NotFound
from wisegate.protocol.bounds import echo

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UrlGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = _refusal(scope["path"], scope.get("query_string", b""))
            if refusal is not None:
                request_id = scope.get("state", {}).get("request_id")
                await error_response(refusal, request_id)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refusal(path: str, query: bytes) -> ApiError | None:
    if _CONTROL.search(path):
        return NotFound(f"Not Found: {echo(path)!r} names no resource (it contains a control character)")
    if not query:
        return None
    for name, value in parse_qsl(
        query.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace"
    ):
        if _CONTROL.search(name) or _CONTROL.search(value):
            return InvalidRequest(
                f"{name!r}: query parameters must not contain control characters such as NUL"
            )
    return None
