"""Compaction: ``compaction: {"type": "summarize"}`` on Messages, and summaries sent back in ``messages``.

A compaction request is answered by the requested model itself: the conversation in ``messages`` is
written out as a plain transcript and the model is asked to summarize it (:func:`summarization_request`).
The answer is one ``compaction`` block and ``stop_reason: "compaction"``, streamed as the Claude API
streams it (:func:`compaction_events`): ``content_block_start`` with ``content: null``, pings while the
model writes, one ``compaction_delta`` carrying the whole summary, ``content_block_stop``. Usage is the
summarization call's, exactly, also listed as one ``{"type": "compaction"}`` entry of ``iterations``.
A model that declines to summarize (``stop_reason: "refusal"``) fails the compaction: the block's
``content`` is null, as the Claude API answers a compaction that produced no valid summary.

Small models loop: asked for a summary, SmolLM2-135M wrote one sentence over and over and lost the
facts. So the model is asked for notes, one fact per line (a list is what it keeps best), decoding is
greedy unless the request sets sampling, ``max_tokens`` is at most :data:`SUMMARY_MAX_TOKENS`, and the
summary ends at the first sentence or line the model repeats (generation stops there; usage is what
was generated). ``bench/compaction_summaries.py`` measures repeats and facts kept.

A later request sends the block back first in ``messages``; before it reaches a backend that does
not speak the wire format itself, :func:`expand_summaries` puts the summary, as a user turn, in place of
everything before the block. A block whose ``content`` is null (a failed compaction) changes nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator
from typing import Any, TypeVar

from wisegate.protocol.content import (
    CompactionBlockParam,
    ContentBlockParam,
    DocumentBlockParam,
    MessageParam,
    PlainTextSource,
    SearchResultBlockParam,
    TextBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from wisegate.protocol.events import (
    CompactionDelta,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    MessageStart,
    MessageStop,
    Ping,
    StreamEvent,
    TextDelta,
)
from wisegate.protocol.messages import CompactionBlock, CountTokensRequest, MessagesRequest, Usage

# Small models summarize best when the task comes after the text and names what to keep; the
# transcript's speaker labels are the ones they were trained on. Notes, one fact per line, keep more
# facts and repeat less than "a few sentences" (bench/compaction_summaries.py).
SUMMARY_SYSTEM = "You take notes of conversations. You write each fact once."
SUMMARY_TASK = (
    "Write the facts of the conversation above as short notes, one per line: every name, place, number, "
    "date and decision, and last what the user asked for. Write each fact once. Write only the notes."
)
SUMMARY_LEAD = "Summary of our conversation so far:"
SUMMARY_MAX_TOKENS = 512  # a summary longer than this no longer saves much context
_UNIT = re.compile(r"[^\n.!?]*[\n.!?]+")  # a sentence or line, with what ends it
_PING_EVERY = 5.0

R = TypeVar("R", MessagesRequest, CountTokensRequest)


def summarization_request(request: MessagesRequest) -> MessagesRequest:
    """The request the model answers to write the summary of ``request.messages``."""
    expanded = expand_summaries(request)
    transcript = "\n\n".join(filter(None, (_turn_text(m) for m in expanded.messages)))
    instructions = request.compaction.custom_instructions() if request.compaction else None
    fields: dict[str, Any] = {
        "model": request.model,
        "max_tokens": min(request.max_tokens, SUMMARY_MAX_TOKENS),
        "system": SUMMARY_SYSTEM,
        "messages": [{"role": "user", "content": f"{transcript}\n\n{instructions or SUMMARY_TASK}"}],
        "temperature": 0.0,  # greedy: the likeliest wording of the facts, the same each time
    }
    for name in ("temperature", "top_p", "top_k", "metadata", "service_tier", "speed"):
        value = getattr(request, name)
        if value is not None:
            fields[name] = value.model_dump() if hasattr(value, "model_dump") else value
    return MessagesRequest.model_validate(fields)


def expand_summaries(request: R) -> R:
    """``request`` with the last summarized ``compaction`` block's summary in place of what precedes
    it, as a user turn; blocks with a null summary are left out. Unchanged without compaction blocks."""
    last: tuple[int, int] | None = None
    found = False
    for index, message in enumerate(request.messages):
        for position, block in enumerate(message.blocks()):
            if isinstance(block, CompactionBlockParam):
                found = True
                if block.content is not None:
                    last = (index, position)
    if not found:
        return request
    messages: list[MessageParam] = []
    start = 0
    if last is not None:
        index, position = last
        summary = request.messages[index].blocks()[position]
        assert isinstance(summary, CompactionBlockParam)
        lead = TextBlockParam(
            type="text", text=f"{SUMMARY_LEAD}\n{summary.content}", cache_control=summary.cache_control
        )
        messages.append(MessageParam(role="user", content=[lead]))
        rest = _without_compaction(request.messages[index].blocks()[position + 1 :])
        if rest:
            messages.append(MessageParam(role=request.messages[index].role, content=rest))
        start = index + 1
    for message in request.messages[start:]:
        if isinstance(message.content, str):
            messages.append(message)
            continue
        blocks = _without_compaction(message.content)
        if blocks:
            messages.append(message.model_copy(update={"content": blocks}))
    return request.model_copy(update={"messages": messages})


def _without_compaction(blocks: list[ContentBlockParam]) -> list[ContentBlockParam]:
    return [b for b in blocks if not isinstance(b, CompactionBlockParam)]


def _turn_text(message: MessageParam) -> str:
    label = {"user": "User", "assistant": "Assistant", "system": "System"}[message.role]
    parts = [text for block in message.blocks() if (text := _block_text(block))]
    return f"{label}: " + "\n".join(parts) if parts else ""


def _block_text(block: ContentBlockParam) -> str:
    if isinstance(block, TextBlockParam):
        return block.text.strip()
    if isinstance(block, ToolUseBlockParam):
        return f"(calls the tool {block.name} with {block.input})"
    if isinstance(block, ToolResultBlockParam):
        if isinstance(block.content, str):
            return f"(tool result: {block.content.strip()})"
        texts = [_block_text(item) for item in block.content or []]
        return "(tool result: " + " ".join(t for t in texts if t) + ")"
    if isinstance(block, DocumentBlockParam):
        body = block.source.data if isinstance(block.source, PlainTextSource) else ""
        return f"(document {block.title or ''}: {body.strip()})".replace(" :", ":")
    if isinstance(block, SearchResultBlockParam):
        return "(search result: " + " ".join(b.text for b in block.content) + ")"
    return ""


async def compaction_events(events: AsyncGenerator[StreamEvent], usage: Usage) -> AsyncGenerator[StreamEvent]:
    """A summarization answer's events turned into a compaction response's (``usage`` is the tally
    the backend keeps current). Nothing is yielded before the backend's first event. When the model
    starts repeating itself, generation stops and the summary ends before the repeat."""
    summary: list[str] = []
    last_ping = time.monotonic()
    try:
        async for event in events:
            if isinstance(event, MessageStart):
                yield event
                yield ContentBlockStart(index=0, content_block=CompactionBlock())
            elif isinstance(event, ContentBlockDelta) and isinstance(event.delta, TextDelta):
                summary.append(event.delta.text)
                kept = without_repeat("".join(summary))
                if kept is not None:  # a loop: end here, with what the model wrote once
                    for ending in _ended(kept, usage):
                        yield ending
                    return
                if time.monotonic() - last_ping >= _PING_EVERY:
                    last_ping = time.monotonic()
                    yield Ping()
            elif isinstance(event, MessageDelta):
                # A model that declines to summarize has failed the compaction: its words are no
                # summary, and a null one is what a later request can send back as a no-op.
                declined = event.delta.stop_reason == "refusal"
                text = "" if declined else "".join(summary).strip()
                yield ContentBlockDelta(index=0, delta=CompactionDelta(content=text or None))
                yield ContentBlockStop(index=0)
                yield MessageDelta(
                    delta=MessageDeltaBody(stop_reason="compaction"),
                    usage=event.usage.model_copy(update={"iterations": _iterations(usage)}),
                )
            elif isinstance(event, Ping | ContentBlockStart | ContentBlockStop | ContentBlockDelta):
                continue  # the model's own text block becomes the compaction block
            else:
                yield event
    finally:
        await events.aclose()


def without_repeat(text: str) -> str | None:
    """``text`` up to the first sentence or line that repeats an earlier one (compared without case,
    spacing and punctuation), or ``None`` when no complete sentence or line repeats."""
    seen: set[str] = set()
    for unit in _UNIT.finditer(text):
        key = " ".join(re.sub(r"[^\w\s]", " ", unit.group()).lower().split())
        if not key or key.isdigit():  # nothing, or a number's part ("3." of "3.5")
            continue
        if key in seen:
            return text[: unit.start()].strip()
        seen.add(key)
    return None


def _ended(summary: str, usage: Usage) -> list[StreamEvent]:
    """The end of a compaction response cut short: the block with ``summary``, and usage so far."""
    delta_usage = MessageDeltaUsage(
        output_tokens=usage.output_tokens,
        input_tokens=usage.input_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        iterations=_iterations(usage),
    )
    return [
        ContentBlockDelta(index=0, delta=CompactionDelta(content=summary or None)),
        ContentBlockStop(index=0),
        MessageDelta(delta=MessageDeltaBody(stop_reason="compaction"), usage=delta_usage),
        MessageStop(),
    ]


def _iterations(usage: Usage) -> list[dict[str, Any]]:
    return [
        {
            "type": "compaction",
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
        }
    ]
