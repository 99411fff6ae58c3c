"""A deterministic backend for tests and demos (cf. httpx ``MockTransport``, llm ``MockModel``).

``backend.enqueue(text="hi")`` or ``backend.enqueue(events=[...])`` queues the next answer; with
nothing queued it echoes the last user text, or, when that text is made of lines ``call <tool name> <json
input>``, answers with those tool calls one round at a time: the first answer calls the first line's
tool, the answer after its result the second, and so on; after the last it echoes the last tool
result's text. Requests are recorded in ``backend.calls`` (the last 1000).
Token counts are one per whitespace-separated word, so tests can predict usage exactly. Options, for
tests that need requests in flight: ``delay`` (seconds) makes every answer wait that long before its
first event; ``token_delay`` (seconds) paces the words. ``crash_on`` (a text) kills the process with
SIGKILL when the last user text contains it, as a backend that crashes its process would (crash tests).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import anyio

from wisegate.backends.base import BackendItem, Capabilities, ModelRoute
from wisegate.protocol.content import TextBlockParam, ToolResultBlockParam, ToolUseBlockParam
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
    Message,
    MessagesRequest,
    TextBlock,
    ToolUseBlock,
    Usage,
    new_id,
)

_KEEP_CALLS = 1000


class ScriptedBackend:
    capabilities = Capabilities(
        tools=True,
        images=True,
        pdf=True,
        thinking=True,
        exact_token_count=True,
        structured_outputs=True,
        effort=True,
    )

    def __init__(self, name: str = "scripted", options: dict[str, Any] | None = None) -> None:
        self.name = name
        if (options or {}).get("structured_outputs") is False:
            self.capabilities = dataclasses.replace(ScriptedBackend.capabilities, structured_outputs=False)
        self._delay = float((options or {}).get("token_delay", 0))
        self.delay = float((options or {}).get("delay", 0))
        self._crash_on = str((options or {}).get("crash_on", "")) or None
        self.calls: list[MessagesRequest] = []
        self._queue: deque[str | list[StreamEvent | Exception] | Exception] = deque()

    def enqueue(
        self,
        text: str | None = None,
        events: list[StreamEvent | Exception] | None = None,
        error: Exception | None = None,
    ) -> None:
        """Queue the next answer: plain text, a list of events (an exception in it is raised there),
        or an exception raised before the first event."""
        self._queue.append(error or events or text or "")

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def count_tokens(self, request: CountTokensRequest | MessagesRequest, route: ModelRoute) -> int:
        words = sum(len(b.text.split()) for b in request.system_text())
        for message in request.messages:
            words += sum(len(b.text.split()) for b in message.blocks() if isinstance(b, TextBlockParam))
        return words

    async def stream(
        self, request: MessagesRequest, route: ModelRoute, *, batch: bool = False
    ) -> AsyncGenerator[BackendItem]:
        self.calls.append(request)
        if len(self.calls) > _KEEP_CALLS:  # a long-running demo or bench must not grow without bound
            del self.calls[: len(self.calls) - _KEEP_CALLS]
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._crash_on is not None and self._crash_on in _last_user_text(request):
            os.kill(os.getpid(), signal.SIGKILL)
        script = self._queue.popleft() if self._queue else _last_user_text(request)
        if isinstance(script, Exception):
            raise script
        input_tokens = await self.count_tokens(request, route)
        yield Usage(input_tokens=input_tokens)
        calls = _call_lines(request) if isinstance(script, str) else []
        if calls:
            answer = _next_call(request, calls)
            if isinstance(answer, ToolUseBlock):
                for item in _tool_call(answer, route, input_tokens):
                    yield item
                return
            script = answer
        if isinstance(script, list):
            for event in script:
                if isinstance(event, Exception):
                    raise event
                report = _reported(event)
                if report is not None:
                    yield report
                yield event
            return
        words = script.split(" ")[: request.max_tokens]
        yield MessageStart(
            message=Message(
                id=new_id("msg"),
                model=route.public_id,
                usage=Usage(input_tokens=input_tokens, output_tokens=1),
            )
        )
        yield ContentBlockStart(index=0, content_block=TextBlock(text=""))
        for i, word in enumerate(words):
            if self._delay:
                await anyio.sleep(self._delay)
            yield Usage(output_tokens=i + 1)
            yield ContentBlockDelta(index=0, delta=TextDelta(text=word if i == 0 else " " + word))
        yield ContentBlockStop(index=0)
        stop = "max_tokens" if len(script.split(" ")) > request.max_tokens else "end_turn"
        yield MessageDelta(
            delta=MessageDeltaBody(stop_reason=stop),
            usage=MessageDeltaUsage(output_tokens=len(words), input_tokens=input_tokens),
        )
        yield MessageStop()


def _reported(event: StreamEvent) -> Usage | None:
    """The usage a scripted event states (so usage records match the script)."""
    if isinstance(event, MessageStart):
        return Usage(input_tokens=event.message.usage.input_tokens)
    if isinstance(event, MessageDelta):
        report = Usage(output_tokens=event.usage.output_tokens)
        if event.usage.input_tokens is not None:
            report.input_tokens = event.usage.input_tokens
        return report
    return None


def _last_user_text(request: MessagesRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            text = " ".join(b.text for b in message.blocks() if isinstance(b, TextBlockParam))
            if text or not any(isinstance(b, ToolResultBlockParam) for b in message.blocks()):
                return text
    return ""


def _call_lines(request: MessagesRequest) -> list[str]:
    """The ``call …`` lines of the last user turn that has text."""
    for message in reversed(request.messages):
        texts = [b.text for b in message.blocks() if isinstance(b, TextBlockParam) and b.text]
        if message.role == "user" and texts:
            return [line for line in "\n".join(texts).split("\n") if line.startswith("call ")]
    return []


def _next_call(request: MessagesRequest, lines: list[str]) -> ToolUseBlock | str:
    """The call of the line after those already answered, or the last tool result's text."""
    done = 0
    last_result = ""
    for message in reversed(request.messages):
        blocks = message.blocks()
        if message.role == "user" and any(isinstance(b, TextBlockParam) and b.text for b in blocks):
            break
        if message.role == "assistant" and any(isinstance(b, ToolUseBlockParam) for b in blocks):
            done += 1
        for block in blocks:
            if isinstance(block, ToolResultBlockParam) and not last_result:
                content = block.content
                last_result = (
                    content
                    if isinstance(content, str)
                    else " ".join(b.text for b in content or [] if isinstance(b, TextBlockParam))
                )
    if done >= len(lines):
        return last_result or "done"
    _, name, *rest = lines[done].split(" ", 2)
    try:
        given = json.loads(rest[0]) if rest else {}
    except json.JSONDecodeError:
        given = {}
    return ToolUseBlock(id=new_id("toolu"), name=name, input=given if isinstance(given, dict) else {})


def _tool_call(call: ToolUseBlock, route: ModelRoute, input_tokens: int) -> list[BackendItem]:
    return [
        Usage(output_tokens=1),
        MessageStart(
            message=Message(
                id=new_id("msg"),
                model=route.public_id,
                usage=Usage(input_tokens=input_tokens, output_tokens=1),
            )
        ),
        ContentBlockStart(index=0, content_block=ToolUseBlock(id=call.id, name=call.name, input={})),
        ContentBlockDelta(index=0, delta=InputJsonDelta(partial_json=json.dumps(call.input))),
        ContentBlockStop(index=0),
        MessageDelta(
            delta=MessageDeltaBody(stop_reason="tool_use"),
            usage=MessageDeltaUsage(output_tokens=1, input_tokens=input_tokens),
        ),
        MessageStop(),
    ]
