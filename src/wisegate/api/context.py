"""The outermost ASGI middleware: request ids, response headers, error envelopes, request logs.

Every response gets ``request-id`` and ``anthropic-organization-id``; every exception becomes an
Anthropic error envelope (500 ``api_error`` with no traceback for unexpected ones), logged with the
request id. The hottest endpoints (``direct``: method and exact path) are called from here without
the router and Starlette's exception middleware, which would render their errors the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wisegate.api.errors import error_response, from_http_exception
from wisegate.errors import ApiError
from wisegate.logs import request_id_var
from wisegate.protocol.messages import new_id

log = logging.getLogger("wisegate.http")


class RequestContext:
    def __init__(
        self,
        app: ASGIApp,
        organization_id: Callable[[], str | None],
        direct: Mapping[tuple[str, str], ASGIApp] | None = None,
    ) -> None:
        self.app = app
        self._organization_id = organization_id
        self._direct = dict(direct or {})

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

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                org = state.get("organization_id") or self._organization_id()
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                if org:
                    headers.append((b"anthropic-organization-id", org.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self._direct.get((scope["method"], scope["path"]), self.app)(
                scope, receive, send_with_headers
            )
        except Exception as exc:
            if status:
                log.exception("failure after the response started")
                raise
            if isinstance(exc, HTTPException):
                error: ApiError = from_http_exception(exc, scope["method"], scope["path"])
            elif isinstance(exc, ApiError):
                error = exc
            else:
                log.exception("unhandled error")
                error = ApiError("Internal server error. The request id identifies it in the server's logs.")
            await error_response(error, request_id)(scope, receive, send_with_headers)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)
