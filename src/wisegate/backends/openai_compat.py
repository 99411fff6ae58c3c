"""OpenAI-compatible upstreams (vLLM, llama.cpp server, Ollama, OpenRouter …): Messages ⇄ Chat Completions.

The request is translated (system, text and image content, tools and ``tool_choice``, earlier tool
calls and their results, stop sequences, sampling) and always sent with ``stream: true`` and
``stream_options.include_usage``; the chunks come back as Messages stream events — text as
``text_delta``, tool calls as ``tool_use`` blocks with ``input_json_delta`` — and ``finish_reason``
becomes ``stop_reason``. Non-streaming answers are assembled from the same events by the domain.

Options: ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``), ``api_key``/``api_keys`` (sent as
``Bearer``), ``headers``, ``images`` (true: the upstream takes ``image_url`` parts), ``send_top_k``
(vLLM and llama.cpp accept ``top_k``), ``max_connections``, ``connect_timeout``, ``read_timeout``.
``count_tokens`` is an estimate (about 4 characters a token): Chat Completions has no counting call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from wisegate.backends.base import BackendItem, Capabilities, ModelRoute
from wisegate.backends.upstream import (
    KeyPool,
    UpstreamUnavailable,
    connection_error,
    error_message,
    new_session,
    upstream_error,
)
from wisegate.errors import InvalidRequest
from wisegate.protocol.content import (
    DocumentBlockParam,
    ImageBlockParam,
    MessageParam,
    TextBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    InputJsonDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    StreamEvent,
    TextDelta,
)
from wisegate.protocol.messages import (
    CountTokensRequest,
    CustomTool,
    Message,
    MessagesRequest,
    StopReason,
    TextBlock,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolUseBlock,
    Usage,
    new_id,
)

log = logging.getLogger("wisegate.upstream")

FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _image_part(block: ImageBlockParam) -> dict[str, Any]:
    source = block.source
    if source.type == "base64":
        url = f"data:{source.media_type};base64,{source.data}"
    elif source.type == "url":
        url = source.url
    else:
        raise InvalidRequest(
            "image blocks with a file source cannot be sent to an OpenAI-compatible upstream"
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _result_text(block: ToolResultBlockParam) -> str:
    if block.content is None:
        return ""
    if isinstance(block.content, str):
        return block.content
    return "\n".join(item.text for item in block.content if isinstance(item, TextBlockParam))


def _messages(request: MessagesRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system = "\n\n".join(b.text for b in request.system_text())
    if system:
        out.append({"role": "system", "content": system})
    for message in request.messages:
        out.extend(_message(message))
    return out


def _message(message: MessageParam) -> list[dict[str, Any]]:
    if message.role == "system":
        return [{"role": "system", "content": "\n".join(_texts(message))}]
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "assistant":
        calls = [
            {
                "id": b.id,
                "type": "function",
                "function": {"name": b.name, "arguments": json.dumps(b.input, ensure_ascii=False)},
            }
            for b in message.content
            if isinstance(b, ToolUseBlockParam)
        ]
        entry: dict[str, Any] = {"role": "assistant", "content": "".join(_texts(message)) or None}
        if calls:
            entry["tool_calls"] = calls
        return [entry]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, ToolResultBlockParam):
            text = _result_text(block)
            out.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": text})
        elif isinstance(block, TextBlockParam):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlockParam):
            parts.append(_image_part(block))
        elif isinstance(block, DocumentBlockParam) and block.source.type == "text":
            parts.append({"type": "text", "text": block.source.data})
    if parts:
        plain = all(p["type"] == "text" for p in parts)
        content: Any = "\n".join(p["text"] for p in parts) if plain else parts
        out.append({"role": "user", "content": content})
    return out


def _texts(message: MessageParam) -> list[str]:
    return [b.text for b in message.blocks() if isinstance(b, TextBlockParam)]


def chat_request(request: MessagesRequest, model: str, send_top_k: bool = False) -> dict[str, Any]:
    """The Chat Completions body for a Messages request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": _messages(request),
        "max_tokens": request.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.top_k is not None and send_top_k:
        body["top_k"] = request.top_k
    if request.stop_sequences:
        body["stop"] = request.stop_sequences
    if request.metadata is not None and request.metadata.user_id:
        body["user"] = request.metadata.user_id
    tools = [t for t in request.tools or [] if isinstance(t, CustomTool)]
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description or "",
                    "parameters": t.input_schema.model_dump(exclude_none=True),
                    **({"strict": True} if t.strict else {}),
                },
            }
            for t in tools
        ]
    output = request.output_config.format if request.output_config is not None else None
    if output is not None:
        # Structured outputs as Chat Completions' strict ``response_format``.
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": output.json_schema, "strict": True},
        }
    choice = request.tool_choice
    if isinstance(choice, ToolChoiceAuto):
        body["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceAny):
        body["tool_choice"] = "required"
    elif isinstance(choice, ToolChoiceTool):
        body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif isinstance(choice, ToolChoiceNone):
        body["tool_choice"] = "none"
    if tools and isinstance(choice, ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool):
        if choice.disable_parallel_tool_use:
            body["parallel_tool_calls"] = False
    return body


class _Translator:
    """Chat Completions chunks → Messages events, one chunk at a time."""

    def __init__(self, request: MessagesRequest, route: ModelRoute) -> None:
        self._request, self._route = request, route
        self._usage = Usage()  # the upstream's, reported before the events of the chunk that carried it
        self._started = False
        self._index = -1
        self._open: str | None = None  # "text" or "tool:<openai index>"
        self._stop: StopReason | None = None
        self._stop_sequence: str | None = None

    def _start(self) -> list[StreamEvent]:
        if self._started:
            return []
        self._started = True
        message = Message(id=new_id("msg"), model=self._route.public_id, usage=Usage(input_tokens=0))
        return [MessageStart(message=message)]

    def _switch(self, kind: str, block: TextBlock | ToolUseBlock) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._open is not None:
            events.append(ContentBlockStop(index=self._index))
        self._index += 1
        self._open = kind
        events.append(ContentBlockStart(index=self._index, content_block=block))
        return events

    def feed(self, chunk: dict[str, Any]) -> list[BackendItem]:
        events: list[BackendItem] = []
        if isinstance(chunk.get("usage"), dict):
            self._read_usage(chunk["usage"])
            events.append(self._usage.model_copy())
        events += self._start()
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._open != "text":
                    events += self._switch("text", TextBlock(text=""))
                events.append(ContentBlockDelta(index=self._index, delta=TextDelta(text=text)))
            for call in delta.get("tool_calls") or []:
                kind = f"tool:{call.get('index', 0)}"
                function = call.get("function") or {}
                if self._open != kind:
                    block = ToolUseBlock(
                        id=call.get("id") or new_id("toolu"), name=function.get("name", ""), input={}
                    )
                    events += self._switch(kind, block)
                arguments = function.get("arguments")
                if arguments:
                    events.append(
                        ContentBlockDelta(index=self._index, delta=InputJsonDelta(partial_json=arguments))
                    )
            reason = choice.get("finish_reason")
            if reason:
                self._stop = FINISH_REASONS.get(reason, "end_turn")
                matched = choice.get("stop_reason")  # vLLM names the stop string that matched
                if isinstance(matched, str) and matched in (self._request.stop_sequences or []):
                    self._stop, self._stop_sequence = "stop_sequence", matched
        return events

    def _read_usage(self, usage: dict[str, Any]) -> None:
        prompt = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        self._usage.input_tokens = max(0, prompt - cached)
        self._usage.cache_read_input_tokens = cached
        self._usage.output_tokens = int(usage.get("completion_tokens") or 0)

    def finish(self) -> list[StreamEvent]:
        events = self._start()
        if self._open is not None:
            events.append(ContentBlockStop(index=self._index))
            self._open = None
        events.append(
            MessageDelta(
                delta=MessageDeltaBody(
                    stop_reason=self._stop or "end_turn", stop_sequence=self._stop_sequence
                ),
                usage=MessageDeltaUsage(
                    output_tokens=self._usage.output_tokens,
                    input_tokens=self._usage.input_tokens,
                    cache_read_input_tokens=self._usage.cache_read_input_tokens,
                ),
            )
        )
        events.append(MessageStop())
        return events


class OpenAICompatBackend:
    remote = True

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self._options = options
        self._base_url = str(options.get("base_url", "http://127.0.0.1:8000/v1")).rstrip("/")
        self._keys = KeyPool.from_options(options)
        self._headers = {str(k): str(v) for k, v in (options.get("headers") or {}).items()}
        self._send_top_k = bool(options.get("send_top_k", False))
        self.capabilities = Capabilities(
            tools=True,
            images=bool(options.get("images", True)),
            pdf=False,
            thinking=False,
            exact_token_count=False,
            # ``structured_outputs = false`` for an upstream without ``response_format: json_schema``:
            # requests that need it are then refused (400 naming the model) instead of ignored.
            structured_outputs=bool(options.get("structured_outputs", True)),
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = new_session(self._options)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def count_tokens(self, request: CountTokensRequest | MessagesRequest, route: ModelRoute) -> int:
        text = request.model_dump_json(include={"system", "messages", "tools"}, exclude_none=True)
        return max(1, len(text) // 4)

    async def stream(
        self, request: MessagesRequest, route: ModelRoute, *, batch: bool = False
    ) -> AsyncGenerator[BackendItem]:
        if self._session is None:
            await self.start()
        assert self._session is not None
        body = chat_request(request, route.upstream_model, self._send_top_k)
        headers = {"content-type": "application/json", "accept": "text/event-stream", **self._headers}
        key = route.api_key or self._keys.next()
        if key:
            headers["authorization"] = f"Bearer {key}"
        try:
            response = await self._session.post(
                self._base_url + "/chat/completions", data=json.dumps(body), headers=headers
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise connection_error(self.name, exc) from None
        translator = _Translator(request, route)
        try:
            if response.status >= 400:
                raise upstream_error(self.name, response.status, await response.read(), response.headers)
            buffer = b""
            async for data in response.content.iter_any():
                buffer += data.replace(b"\r\n", b"\n")
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        continue
                    chunk = json.loads(payload)
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise UpstreamUnavailable(f"The upstream failed: {error_message(payload)}")
                    for item in translator.feed(chunk):
                        yield item
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise connection_error(self.name, exc) from None
        finally:
            response.close()
        for event in translator.finish():
            yield event
