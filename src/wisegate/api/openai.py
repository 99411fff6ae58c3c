"""OpenAI's format: ``POST /v1/chat/completions`` and the models list, also under the ``/openai/v1`` prefix.

``GET /v1/models`` (``api/models.py``) answers in OpenAI's shape only for a request that looks like an
OpenAI client's; under ``/openai/v1`` always. Every failure on these paths is OpenAI's error body
``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from wisegate.api.auth import authenticate
from wisegate.api.body import parse
from wisegate.api.errors import request_id_of, retry_after
from wisegate.api.render import json_response
from wisegate.api.sse import PING_COMMENT, open_sse
from wisegate.backends.registry import ServedModel
from wisegate.domain.messages import MessageStream
from wisegate.domain.openai_chat import ChatCompletionService, chunks, in_openai_terms
from wisegate.errors import ApiError, NotFound
from wisegate.protocol.bounds import echo
from wisegate.protocol.openai import ChatCompletionRequest, OpenAIModel, OpenAIModelList, openai_error
from wisegate.services import services_of

Endpoint = Callable[[Request], Awaitable[Response]]


def error_response(exc: ApiError, request_id: str | None) -> Response:
    """An ``ApiError`` as OpenAI words it; 529 becomes 503, the status OpenAI's clients know."""
    status = 503 if exc.status == 529 else exc.status
    code: str | None = None
    if status >= 500:
        error_type = "server_error"
    elif status == 429:
        error_type, code = "requests", "rate_limit_exceeded"
    else:
        error_type = "invalid_request_error"
    if status == 401:
        code = "invalid_api_key"
    elif status == 404 and exc.message.startswith("model:"):
        code = "model_not_found"
    elif exc.message.startswith("prompt is too long"):
        code = "context_length_exceeded"
    headers = {"x-request-id": request_id} if request_id else {}
    if (wait := retry_after(exc)) is not None:
        headers["retry-after"] = wait
    body = json.dumps(openai_error(exc.message, error_type, code)).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _openai_errors(endpoint: Endpoint) -> Endpoint:
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return error_response(exc, request_id_of(request))

    wrapped.__name__ = endpoint.__name__
    return wrapped


@_openai_errors
async def chat_completions(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    body = await parse(request, ChatCompletionRequest, services.settings.max_messages_request_bytes)
    request.state.model = body.model
    chat = ChatCompletionService(services.messages)
    request_id = request_id_of(request) or ""
    try:  # the errors name fields of the Messages request made from this one: named as sent here
        call = await chat.call(principal, body, request_id)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await open_sse(
                chat.open_stream(call),
                lambda stream: _chunk_lines(stream, include_usage),
                lambda stream: None,
                services.drain,
                ping_seconds=services.settings.stream_ping_seconds,
                error_tail=_openai_error_line,
                ping=PING_COMMENT,  # OpenAI's SDK would turn an `event: ping` into an empty chunk
            )
        completion = await chat.create(call)
    except ApiError as exc:
        exc.message = in_openai_terms(exc.message, body)
        raise
    return json_response(completion)


def _model(served: ServedModel) -> OpenAIModel:
    created = datetime.fromisoformat(served.config.created_at.replace("Z", "+00:00"))
    return OpenAIModel(id=served.config.id, created=int(created.timestamp()))


@_openai_errors
async def openai_list_models(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    body = OpenAIModelList(data=[_model(m) for m in await services.catalog.visible(principal)])
    return json_response(body)


@_openai_errors
async def openai_get_model(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    served = await services.catalog.resolve(principal, request.path_params["model_id"])
    return json_response(_model(served))


@_openai_errors
async def not_found(request: Request) -> Response:
    raise NotFound(f"Not Found: no route for {request.method} {echo(request.url.path)}")


async def _chunk_lines(stream: MessageStream, include_usage: bool) -> AsyncIterator[bytes]:
    """``data: <chat.completion.chunk>`` lines, then ``data: [DONE]``."""
    async for chunk in chunks(stream, include_usage):
        yield b"data: " + chunk.model_dump_json().encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


def _openai_error_line(error: ApiError) -> bytes:
    """How OpenAI ends a stream that fails: a ``data:`` line holding its error body."""
    return b"data: " + json.dumps(openai_error(error.message, "server_error", None)).encode() + b"\n\n"
