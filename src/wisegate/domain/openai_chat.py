"""Chat Completions (OpenAI's format) answered through the Messages path: same routing, limits and ledger.

A Chat Completions request becomes a :class:`MessagesRequest` (system and developer messages hoisted
into ``system``, tool calls into ``tool_use`` blocks, tool messages into ``tool_result`` blocks, the
fields Anthropic's own OpenAI layer ignores ignored); the answer's stream events become
``chat.completion.chunk`` objects, or are folded into one ``chat.completion``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from pydantic import ValidationError

from wisegate.backends.registry import ServedModel
from wisegate.domain.call import Call
from wisegate.domain.keys import Principal
from wisegate.domain.messages import MessageService, MessageStream
from wisegate.errors import InvalidRequest, from_validation_error
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    InputJsonDelta,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamEvent,
    TextDelta,
)
from wisegate.protocol.json_depth import parse_json
from wisegate.protocol.messages import Message, MessagesRequest, TextBlock, ToolUseBlock
from wisegate.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    ChunkDelta,
    CompletionUsage,
    FinishReason,
    FunctionCall,
    ImagePart,
    NamedToolChoice,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolCallDeltaFunction,
)
from wisegate.protocol.surrogates import problem, surrogate_path

DEFAULT_MAX_TOKENS = 4096

_FINISH: dict[str | None, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class ChatCompletionService:
    """``create`` and ``stream`` in OpenAI's shapes on top of :class:`MessageService`."""

    def __init__(self, messages: MessageService) -> None:
        self._messages = messages

    async def call(self, principal: Principal, body: ChatCompletionRequest, request_id: str) -> Call:
        """The Messages call that answers ``body``, its model resolved once (also when the model's
        output limit is the default ``max_tokens``)."""
        if body.n is not None and body.n != 1:
            raise InvalidRequest("n: only n=1 is supported")
        streamed = bool(body.stream)
        served: ServedModel | None = None
        max_tokens = body.max_completion_tokens or body.max_tokens
        if max_tokens is None:
            served = await self._messages.model_for(principal, body.model, request_id, streamed=streamed)
            max_tokens = served.route.max_output_tokens or DEFAULT_MAX_TOKENS
        try:
            request = MessagesRequest.model_validate(to_messages(body, max_tokens))
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        return await self._messages.call(principal, request, request_id, streamed=streamed, served=served)

    async def create(self, call: Call) -> ChatCompletion:
        return completion(await self._messages.create(call))

    async def open_stream(self, call: Call) -> MessageStream:
        return await self._messages.open_stream(call)


def to_messages(body: ChatCompletionRequest, max_tokens: int) -> dict[str, Any]:
    """The Messages request body for ``body``, asking at most ``max_tokens``."""
    system, messages = _conversation(body.messages)
    request: dict[str, Any] = {"model": body.model, "max_tokens": max_tokens, "messages": messages}
    if system:
        request["system"] = system
    if body.temperature is not None:
        request["temperature"] = min(body.temperature, 1.0)
    if body.top_p is not None:
        request["top_p"] = body.top_p
    stops = [body.stop] if isinstance(body.stop, str) else body.stop or []
    if any(s.strip() for s in stops):
        request["stop_sequences"] = [s for s in stops if s.strip()]
    if body.tools:
        request["tools"] = [
            {
                "name": tool.function.name,
                "description": tool.function.description or "",
                "input_schema": tool.function.parameters or {"type": "object", "properties": {}},
                **({"strict": True} if tool.function.strict else {}),
            }
            for tool in body.tools
        ]
    output = _output_format(body)
    if output is not None:
        request["output_config"] = {"format": output}
    choice = _tool_choice(body)
    if choice is not None:
        request["tool_choice"] = choice
    return request


def _text(content: str | list[Any] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))


def _image(part: ImagePart) -> dict[str, Any]:
    url = part.image_url.url
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[len("data:") :].split(";")[0]
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _user_blocks(content: str | list[Any] | None) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(_image(part))
    return blocks


def _check_present(message: ChatMessage, index: int) -> None:
    """Only an assistant message that calls tools may leave ``content`` null (in OpenAI's words)."""
    if message.content is None and not (message.role == "assistant" and message.tool_calls):
        expected = "a string" if message.role == "tool" else "a string or an array of content parts"
        raise InvalidRequest(f"Invalid value for 'messages[{index}].content': expected {expected}, got null.")


def _check_nonempty(content: str | list[Any] | None, index: int) -> None:
    """A user message has content, and none of its text parts is empty (in OpenAI's words)."""
    where = f"messages[{index}].content"
    if content == "":
        raise InvalidRequest(
            f"Invalid '{where}': string too short. Expected a string with minimum length 1, but got an "
            "empty string instead."
        )
    if content == []:
        raise InvalidRequest(
            f"Invalid '{where}': empty array. Expected an array with minimum length 1, but got an empty "
            "array instead."
        )
    for position, part in enumerate(content if isinstance(content, list) else ()):
        if isinstance(part, TextPart) and not part.text:
            raise InvalidRequest(
                f"Invalid '{where}[{position}].text': string too short. Expected a string with minimum "
                "length 1, but got an empty string instead."
            )


def _assistant_blocks(message: ChatMessage, index: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text(message.content)
    if text:
        blocks.append({"type": "text", "text": text})
    for n, call in enumerate(message.tool_calls or []):
        where = f"messages.{index}.tool_calls.{n}.function.arguments"
        try:
            arguments = parse_json(call.function.arguments or "{}")
        except ValueError as exc:  # TooDeep, NotFinite, TooLong, NotJSON: messages made to be shown
            raise InvalidRequest(f"{where}: {exc}") from None
        if not isinstance(arguments, dict):
            raise InvalidRequest(f"{where}: must be a JSON object")
        if (lone := surrogate_path(arguments)) is not None:
            raise InvalidRequest(f"{where}: {problem(lone[1], 'it')}")
        blocks.append({"type": "tool_use", "id": call.id, "name": call.function.name, "input": arguments})
    return blocks


def _conversation(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Messages turns): consecutive turns of one role merged, tool results in user turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if message.role != "function":
            _check_present(message, index)
        if message.role in ("system", "developer"):
            system.append(_text(message.content))
            continue
        if message.role == "function":
            raise InvalidRequest(f"messages.{index}.role: 'function' messages are not supported; use 'tool'")
        if message.role == "tool":
            if not message.tool_call_id:
                raise InvalidRequest(f"messages.{index}.tool_call_id: required for role 'tool'")
            role = "user"
            blocks = [
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": _text(message.content),
                }
            ]
        elif message.role == "assistant":
            role, blocks = "assistant", _assistant_blocks(message, index)
        else:
            _check_nonempty(message.content, index)
            role, blocks = "user", _user_blocks(message.content)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return "\n".join(s for s in system if s), turns


def in_openai_terms(message: str, body: ChatCompletionRequest) -> str:
    """``message``, about the Messages request made from ``body``, naming ``body``'s own fields:
    ``tools.0.input_schema.x`` is ``tools.0.function.parameters.x`` there, ``output_config.format.schema``
    is ``response_format.json_schema.schema``."""
    limit = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    for pattern, replacement in (*_OPENAI_PATHS, (_MAX_TOKENS, limit)):
        message, count = pattern.subn(replacement, message, count=1)
        if count:
            break
    return message


_OPENAI_PATHS = (
    (re.compile(r"^output_config\.format\.schema(?=[.:])"), "response_format.json_schema.schema"),
    (re.compile(r"^output_config\.format(?=[.:])"), "response_format"),
    (re.compile(r"^tools\.(\d+)\.(?:custom\.)?input_schema(?=[.:])"), r"tools.\1.function.parameters"),
    (re.compile(r"^tools\.(\d+)\.(?:custom\.)?(name|description|strict)(?=[.:])"), r"tools.\1.function.\2"),
    (re.compile(r"^stop_sequences(?=[.:])"), "stop"),
)
_MAX_TOKENS = re.compile(r"^max_tokens(?=[.:])")


def _output_format(body: ChatCompletionRequest) -> dict[str, Any] | None:
    """``response_format`` as the Messages ``output_config.format`` (enforced like it)."""
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_schema", "schema": {"type": "object"}}
    if fmt.json_schema is None or fmt.json_schema.schema_ is None:
        raise InvalidRequest("response_format.json_schema.schema: required for type 'json_schema'")
    return {"type": "json_schema", "schema": fmt.json_schema.schema_}


def _tool_choice(body: ChatCompletionRequest) -> dict[str, Any] | None:
    choice = body.tool_choice
    if choice is None and body.parallel_tool_calls is not False:
        return None
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, NamedToolChoice):
        result: dict[str, Any] = {"type": "tool", "name": choice.function.name}
    elif choice == "required":
        result = {"type": "any"}
    elif body.tools:
        result = {"type": "auto"}
    else:
        return None
    if body.parallel_tool_calls is False:
        result["disable_parallel_tool_use"] = True
    return result


def _usage(message: Message) -> CompletionUsage:
    usage = message.usage
    prompt = usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=usage.output_tokens, total_tokens=prompt + usage.output_tokens
    )


def completion_id(message_id: str) -> str:
    return "chatcmpl-" + message_id.removeprefix("msg_")


def completion(message: Message) -> ChatCompletion:
    """One ``chat.completion`` for a whole ``Message``."""
    text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
    calls = [
        ToolCall(id=b.id, function=FunctionCall(name=b.name, arguments=json.dumps(b.input)))
        for b in message.content
        if isinstance(b, ToolUseBlock)
    ]
    return ChatCompletion(
        id=completion_id(message.id),
        created=int(time.time()),
        model=message.model,
        choices=[
            Choice(
                message=ChatCompletionMessage(
                    content=text if text or not calls else None, tool_calls=calls or None
                ),
                finish_reason=_FINISH.get(message.stop_reason, "stop"),
            )
        ],
        usage=_usage(message),
    )


async def chunks(
    stream: AsyncIterable[StreamEvent], include_usage: bool
) -> AsyncGenerator[ChatCompletionChunk]:
    """``chat.completion.chunk`` objects for a Messages event stream (usage last when asked for)."""
    created = int(time.time())
    chunk_id, model = "chatcmpl-", ""
    tool_index: dict[int, int] = {}
    prompt_tokens = output_tokens = 0
    finish: FinishReason = "stop"

    def chunk(delta: ChunkDelta, finish_reason: FinishReason | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=chunk_id,
            created=created,
            model=model,
            choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)],
        )

    async for event in stream:
        if isinstance(event, MessageStart):
            chunk_id, model = completion_id(event.message.id), event.message.model
            usage = event.message.usage
            prompt_tokens = (
                usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens
            )
            yield chunk(ChunkDelta(role="assistant", content=""))
        elif isinstance(event, ContentBlockStart) and isinstance(event.content_block, ToolUseBlock):
            tool_index[event.index] = len(tool_index)
            block = event.content_block
            yield chunk(
                ChunkDelta(
                    tool_calls=[
                        ToolCallDelta(
                            index=tool_index[event.index],
                            id=block.id,
                            type="function",
                            function=ToolCallDeltaFunction(name=block.name, arguments=""),
                        )
                    ]
                )
            )
        elif isinstance(event, ContentBlockDelta) and isinstance(event.delta, TextDelta):
            yield chunk(ChunkDelta(content=event.delta.text))
        elif isinstance(event, ContentBlockDelta) and isinstance(event.delta, InputJsonDelta):
            yield chunk(
                ChunkDelta(
                    tool_calls=[
                        ToolCallDelta(
                            index=tool_index.get(event.index, 0),
                            function=ToolCallDeltaFunction(arguments=event.delta.partial_json),
                        )
                    ]
                )
            )
        elif isinstance(event, MessageDelta):
            finish = _FINISH.get(event.delta.stop_reason, "stop")
            output_tokens = event.usage.output_tokens
        elif isinstance(event, MessageStop):
            yield chunk(ChunkDelta(), finish)
            if include_usage:
                yield ChatCompletionChunk(
                    id=chunk_id,
                    created=created,
                    model=model,
                    choices=[],
                    usage=CompletionUsage(
                        prompt_tokens=prompt_tokens,
                        completion_tokens=output_tokens,
                        total_tokens=prompt_tokens + output_tokens,
                    ),
                )
