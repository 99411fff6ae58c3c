"""``POST /v1/messages`` (JSON or SSE) and ``POST /v1/messages/count_tokens``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

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
from wisegate.api.sse import open_sse
from wisegate.domain.call import Wire
from wisegate.domain.drain import Drain, ShuttingDown
from wisegate.domain.limits import RateLimitSnapshot
from wisegate.domain.messages import accumulate
from wisegate.protocol.events import StreamEvent, encode_sse
from wisegate.protocol.messages import CountTokensRequest, MessagesRequest, MessageTokensCount
from wisegate.services import services_of

T = TypeVar("T")


async def create_message(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    body, raw = await parse_with_bytes(request, MessagesRequest, services.settings.max_messages_request_bytes)
    request.state.model = body.model
    request_id = request_id_of(request) or ""
    if body.thread is not None:  # server-held state: the typed path, which sees the whole response
        opening = services.threads.open_stream(principal, body, request_id, streamed=bool(body.stream))
        if body.stream:
            return await _stream(request, opening)
        return await _respond(request, await opening)
    wire = Wire(raw, request.headers.get("anthropic-beta"), request.headers.get("anthropic-version"))
    call = await services.messages.call(principal, body, request_id, streamed=bool(body.stream), wire=wire)
    if call.relays:
        relayed = await services.messages.open_relay(call)
        headers = rate_limit_headers(relayed.rate_limits)
        return relayed_response(relayed, headers, services.drain, services.settings.stream_ping_seconds)
    if body.stream:
        return await _stream(request, services.messages.open_stream(call))
    return await _respond(request, await services.messages.open_stream(call))


class EventStream(Protocol):
    """What a response is rendered from: ``MessageStream`` or a thread's ``ThreadedStream``."""

    rate_limits: RateLimitSnapshot | None

    def __aiter__(self) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...

    def abort(self, error_type: str) -> None: ...


async def _respond(request: Request, stream: EventStream) -> Response:
    """A JSON response assembled from ``stream`` (a streamed request goes through :func:`_stream`)."""
    services = services_of(request)
    headers = rate_limit_headers(stream.rate_limits)
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


async def _stream(request: Request, opening: Coroutine[Any, Any, EventStream]) -> Response:
    services = services_of(request)
    return await open_sse(
        opening,
        _encoded,
        lambda stream: rate_limit_headers(stream.rate_limits),
        services.drain,
        ping_seconds=services.settings.stream_ping_seconds,
    )


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
    wire = Wire(raw, request.headers.get("anthropic-beta"), request.headers.get("anthropic-version"))
    count = await services.messages.count_tokens(body, principal, wire)
    return JSONResponse(
        MessageTokensCount(input_tokens=count).model_dump(), headers=rate_limit_headers(limits)
    )


async def _encoded(stream: EventStream) -> AsyncIterator[bytes]:
    async for event in stream:
        yield encode_sse(event)
