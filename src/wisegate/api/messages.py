"""``POST /v1/messages`` (JSON or SSE) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from wisegate.api.auth import authenticate
from wisegate.api.body import parse_with_bytes
from wisegate.api.errors import request_id_of
from wisegate.api.ratelimit import rate_limit_headers
from wisegate.api.relay import relayed_response
from wisegate.api.render import json_response
from wisegate.domain.drain import Drain, ShuttingDown
from wisegate.domain.limits import RateLimitSnapshot
from wisegate.domain.messages import accumulate
from wisegate.errors import ApiError
from wisegate.protocol.events import ErrorBody, ErrorEvent, StreamEvent, encode_sse
from wisegate.protocol.messages import CountTokensRequest, MessagesRequest, MessageTokensCount
from wisegate.services import services_of

log = logging.getLogger("wisegate.messages")
T = TypeVar("T")


async def create_message(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    body, raw = await parse_with_bytes(request, MessagesRequest, services.settings.max_messages_request_bytes)
    request.state.model = body.model
    request_id = request_id_of(request) or ""
    if body.thread is not None:  # server-held state: the typed path, which sees the whole response
        stream: EventStream = await services.threads.open_stream(
            principal, body, request_id, streamed=bool(body.stream)
        )
        return await _respond(request, body, stream)
    relayed = await services.messages.open_relay(
        principal,
        body,
        raw,
        request_id,
        beta=request.headers.get("anthropic-beta"),
        version=request.headers.get("anthropic-version"),
    )
    if relayed is not None:
        return relayed_response(relayed, rate_limit_headers(relayed.rate_limits), services.drain)
    stream = await services.messages.open_stream(principal, body, request_id, streamed=bool(body.stream))
    return await _respond(request, body, stream)


class EventStream(Protocol):
    """What a response is rendered from: ``MessageStream`` or a thread's ``ThreadedStream``."""

    rate_limits: RateLimitSnapshot | None

    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...

    def abort(self, error_type: str) -> None: ...


async def _respond(request: Request, body: MessagesRequest, stream: EventStream) -> Response:
    services = services_of(request)
    headers = rate_limit_headers(stream.rate_limits)
    if body.stream:
        return SSEResponse(stream, headers, services.drain)
    try:
        message = await _unless_disconnected(
            request, accumulate(stream), services.drain, lambda: stream.abort(ShuttingDown.type)
        )
    except ShuttingDown:
        await stream.aclose()
        raise
    if message is None:  # the client went away: generation was stopped and settled
        await stream.aclose()
        return Response(status_code=499)
    return json_response(message, headers)


async def create_message_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``create_message`` as a plain ASGI app, for ``api/context.py`` to call without the router."""
    response = await create_message(Request(scope, receive, send))
    await response(scope, receive, send)


async def _unless_disconnected(
    request: Request, work: Awaitable[T], drain: Drain, on_cut: Callable[[], None]
) -> T | None:
    """``await work``, cancelled if the client goes away first (then generation stops and is settled);
    :class:`ShuttingDown` if the server's drain cuts it off first (``on_cut`` runs before that)."""
    result: list[T] = []
    failure: list[BaseException] = []
    async with anyio.create_task_group() as tasks:

        async def run() -> None:
            try:
                result.append(await work)
            except Exception as exc:  # re-raised below, outside the task group (no ExceptionGroup)
                failure.append(exc)
            tasks.cancel_scope.cancel()

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            tasks.cancel_scope.cancel()

        async def cut() -> None:
            await drain.wait_cut()
            on_cut()
            failure.append(ShuttingDown())
            tasks.cancel_scope.cancel()

        tasks.start_soon(run)
        tasks.start_soon(watch)
        tasks.start_soon(cut)
    if failure:
        raise failure[0]
    return result[0] if result else None


async def count_tokens(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    limit = services.settings.max_messages_request_bytes
    body, raw = await parse_with_bytes(request, CountTokensRequest, limit)
    request.state.model = body.model
    limits = await services.limits.admit_count_tokens(principal)
    count = await services.messages.count_tokens(
        body,
        principal,
        raw,
        beta=request.headers.get("anthropic-beta"),
        version=request.headers.get("anthropic-version"),
    )
    return JSONResponse(
        MessageTokensCount(input_tokens=count).model_dump(), headers=rate_limit_headers(limits)
    )


class SSEResponse(Response):
    """Streams events as SSE; a disconnect stops the backend, and the stream is always settled."""

    media_type = "text/event-stream; charset=utf-8"

    def __init__(self, stream: EventStream, headers: dict[str, str] | None, drain: Drain) -> None:
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", self.media_type.encode()), (b"cache-control", b"no-cache")]
        self.raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self._stream = stream
        self._drain = drain
        self._ended = False  # the last body message is being (or was) sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        cut_off = False
        try:
            async with anyio.create_task_group() as tasks:

                async def pump() -> None:
                    await self._pump(send)
                    tasks.cancel_scope.cancel()

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tasks.cancel_scope.cancel()

                async def cut() -> None:
                    nonlocal cut_off
                    await self._drain.wait_cut()
                    if self._ended:
                        return
                    cut_off = True
                    self._stream.abort(ShuttingDown.type)  # before the backend is stopped and settled
                    tasks.cancel_scope.cancel()

                tasks.start_soon(pump)
                tasks.start_soon(watch)
                tasks.start_soon(cut)
            if cut_off and not self._ended:  # the drain's deadline: the client learns why it ends here
                self._ended = True
                await send(
                    {"type": "http.response.body", "body": self._cut_off(ShuttingDown()), "more_body": True}
                )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await self._stream.aclose()

    def _cut_off(self, error: ApiError) -> bytes:
        """The last bytes of a stream the server cuts off."""
        return encode_sse(ErrorEvent(error=ErrorBody(type=error.type, message=error.message)))

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
        self._ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
