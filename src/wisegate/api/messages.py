"""``POST /v1/messages`` (JSON or SSE) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

import logging

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from wisegate.api.auth import authenticate
from wisegate.api.body import parse_with_bytes
from wisegate.api.errors import request_id_of
from wisegate.api.relay import relayed_response
from wisegate.domain.messages import MessageStream
from wisegate.errors import ApiError
from wisegate.protocol.events import ErrorBody, ErrorEvent, encode_sse
from wisegate.protocol.messages import CountTokensRequest, MessagesRequest, MessageTokensCount
from wisegate.services import services_of

log = logging.getLogger("wisegate.messages")


async def create_message(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    body, raw = await parse_with_bytes(request, MessagesRequest, services.settings.max_messages_request_bytes)
    request_id = request_id_of(request) or ""
    relayed = await services.messages.open_relay(
        principal,
        body,
        raw,
        request_id,
        beta=request.headers.get("anthropic-beta"),
        version=request.headers.get("anthropic-version"),
    )
    if relayed is not None:
        return relayed_response(relayed)
    if body.stream:
        stream = await services.messages.open_stream(principal, body, request_id, streamed=True)
        return SSEResponse(stream)
    message = await services.messages.create(principal, body, request_id)
    return Response(message.model_dump_json(), media_type="application/json")


async def count_tokens(request: Request) -> Response:
    services = services_of(request)
    await authenticate(request, services.keys)
    limit = services.settings.max_messages_request_bytes
    body, raw = await parse_with_bytes(request, CountTokensRequest, limit)
    count = await services.messages.count_tokens(
        body,
        raw,
        beta=request.headers.get("anthropic-beta"),
        version=request.headers.get("anthropic-version"),
    )
    return JSONResponse(MessageTokensCount(input_tokens=count).model_dump())


class SSEResponse(Response):
    """Streams events as SSE; a disconnect stops the backend, and the stream is always settled."""

    media_type = "text/event-stream; charset=utf-8"

    def __init__(self, stream: MessageStream) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", self.media_type.encode()), (b"cache-control", b"no-cache")]
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async with anyio.create_task_group() as tasks:

                async def pump() -> None:
                    await self._pump(send)
                    tasks.cancel_scope.cancel()

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tasks.cancel_scope.cancel()

                tasks.start_soon(pump)
                tasks.start_soon(watch)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()

    async def _pump(self, send: Send) -> None:
        try:
            async for event in self._stream:
                await send({"type": "http.response.body", "body": encode_sse(event), "more_body": True})
        except ApiError as exc:
            error = ErrorEvent(error=ErrorBody(type=exc.type, message=exc.message))
            await send({"type": "http.response.body", "body": encode_sse(error), "more_body": True})
        except Exception:
            log.exception("stream failed after it started")
            error = ErrorEvent(error=ErrorBody(type="api_error", message="Internal server error"))
            await send({"type": "http.response.body", "body": encode_sse(error), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
