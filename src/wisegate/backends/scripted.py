"""A deterministic backend for tests and demos (cf. httpx ``MockTransport``, llm ``MockModel``).

``backend.enqueue(text="hi")`` or ``backend.enqueue(events=[...])`` queues the next answer; with
nothing queued it echoes the last user text. Requests are recorded in ``backend.calls`` (the last 1000).
Token counts are one per whitespace-separated word, so tests can predict usage exactly. Options, for
tests that need requests in flight: ``delay`` (seconds) makes every answer wait that long before its
first event; ``token_delay`` (seconds) paces the words. ``crash_on`` (a text) kills the process with
SIGKILL when the last user text contains it, as a backend that crashes its process would (crash tests).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import anyio

from wisegate.backends.base import Capabilities, ModelRoute
from wisegate.protocol.events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
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
    TextBlockParam,
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
        self, request: MessagesRequest, route: ModelRoute, usage: Usage
    ) -> AsyncGenerator[StreamEvent]:
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
        usage.input_tokens = await self.count_tokens(request, route)
        if isinstance(script, list):
            for item in script:
                if isinstance(item, Exception):
                    raise item
                _tally(item, usage)
                yield item
            return
        words = script.split(" ")[: request.max_tokens]
        yield MessageStart(
            message=Message(
                id=new_id("msg"),
                model=route.public_id,
                usage=Usage(input_tokens=usage.input_tokens, output_tokens=1),
            )
        )
        yield ContentBlockStart(index=0, content_block=TextBlock(text=""))
        for i, word in enumerate(words):
            if self._delay:
                await anyio.sleep(self._delay)
            usage.output_tokens += 1
            yield ContentBlockDelta(index=0, delta=TextDelta(text=word if i == 0 else " " + word))
        yield ContentBlockStop(index=0)
        stop = "max_tokens" if len(script.split(" ")) > request.max_tokens else "end_turn"
        yield MessageDelta(
            delta=MessageDeltaBody(stop_reason=stop),
            usage=MessageDeltaUsage(output_tokens=usage.output_tokens, input_tokens=usage.input_tokens),
        )
        yield MessageStop()


def _tally(event: StreamEvent, usage: Usage) -> None:
    """Keep the caller's tally as a scripted event reports it (so usage records match the script)."""
    if isinstance(event, MessageStart):
        usage.input_tokens = event.message.usage.input_tokens
    elif isinstance(event, MessageDelta):
        usage.output_tokens = event.usage.output_tokens
        if event.usage.input_tokens is not None:
            usage.input_tokens = event.usage.input_tokens


def _last_user_text(request: MessagesRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return " ".join(b.text for b in message.blocks() if isinstance(b, TextBlockParam))
    return ""
