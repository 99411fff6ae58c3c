"""OpenAI's format: ``POST /v1/chat/completions`` and the models list, also under the ``/openai/v1`` prefix.

``GET /v1/models`` answers in OpenAI's shape only for a request that looks like an OpenAI client's
(``Authorization: Bearer`` and neither ``anthropic-version`` nor ``x-api-key``); under ``/openai/v1``
always. Every failure on these paths is OpenAI's error body ``{"error": {message, type, param, code}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Send

from wisegate.api import resources
from wisegate.api.auth import authenticate
from wisegate.api.body import parse
from wisegate.api.errors import request_id_of
from wisegate.api.messages import SSEResponse
from wisegate.backends.registry import ServedModel
from wisegate.domain.drain import Drain
from wisegate.domain.messages import MessageStream
from wisegate.domain.openai_chat import ChatCompletionService, chunks
from wisegate.errors import ApiError, NotFound, from_validation_error
from wisegate.protocol.messages import MessagesRequest
from wisegate.protocol.openai import ChatCompletionRequest, OpenAIModel, OpenAIModelList, openai_error
from wisegate.services import services_of

log = logging.getLogger("wisegate.openai")
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
    if exc.retry_after is not None:
        headers["retry-after"] = str(max(1, round(exc.retry_after)))
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
    try:
        messages = MessagesRequest.model_validate(chat.to_messages(body))
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    request_id = request_id_of(request) or ""
    if body.stream:
        stream = await chat.open_stream(principal, messages, request_id)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return ChunkStreamResponse(stream, include_usage, services.drain)
    completion = await chat.create(principal, messages, request_id)
    return Response(completion.model_dump_json(), media_type="application/json")


def _model(served: ServedModel) -> OpenAIModel:
    created = datetime.fromisoformat(served.config.created_at.replace("Z", "+00:00"))
    return OpenAIModel(id=served.config.id, created=int(created.timestamp()))


@_openai_errors
async def openai_list_models(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    body = OpenAIModelList(data=[_model(m) for m in await services.catalog.visible(principal)])
    return Response(body.model_dump_json(), media_type="application/json")


@_openai_errors
async def openai_get_model(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    served = await services.catalog.resolve(principal, request.path_params["model_id"])
    return Response(_model(served).model_dump_json(), media_type="application/json")


@_openai_errors
async def not_found(request: Request) -> Response:
    raise NotFound(f"Not Found: no route for {request.method} {request.url.path}")


def _wants_openai(request: Request) -> bool:
    headers = request.headers
    bearer = headers.get("authorization", "").lower().startswith("bearer ")
    return bearer and "anthropic-version" not in headers and "x-api-key" not in headers


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: OpenAI's shape for OpenAI clients, Anthropic's otherwise."""
    if _wants_openai(request):
        return await openai_list_models(request)
    return await resources.list_models(request)


async def get_model(request: Request) -> Response:
    if _wants_openai(request):
        return await openai_get_model(request)
    return await resources.get_model(request)


class ChunkStreamResponse(SSEResponse):
    """``data: <chat.completion.chunk>`` lines, then ``data: [DONE]``; disconnects handled as for SSE."""

    def __init__(self, stream: MessageStream, include_usage: bool, drain: Drain) -> None:
        super().__init__(stream, None, drain)
        self._include_usage = include_usage

    def _cut_off(self, error: ApiError) -> bytes:
        return b"data: " + json.dumps(openai_error(error.message, "server_error", None)).encode() + b"\n\n"

    async def _pump(self, send: Send) -> None:
        async def write(data: bytes) -> None:
            await send({"type": "http.response.body", "body": b"data: " + data + b"\n\n", "more_body": True})

        try:
            async for chunk in chunks(self._stream, self._include_usage):
                await write(chunk.model_dump_json().encode())
            await write(b"[DONE]")
        except ApiError as exc:
            await write(json.dumps(openai_error(exc.message, "server_error", None)).encode())
        except Exception:
            log.exception("stream failed after it started")
            await write(json.dumps(openai_error("Internal server error", "server_error", None)).encode())
        self._ended = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
