"""Renders a Messages request into the embedded model's chat-template prompt.

The same rendering feeds generation and ``count_tokens``, so both report the same input tokens.
Tools are described in the system turn; earlier tool calls and results are rendered as
``<tool_call>`` / ``<tool_response>`` text, the convention the model is asked to follow.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from jinja2.sandbox import ImmutableSandboxedEnvironment

from wisegate.errors import InvalidRequest
from wisegate.protocol.content import (
    CacheControl,
    ContentBlockParam,
    ContentSource,
    DocumentBlockParam,
    ImageBlockParam,
    PlainTextSource,
    RedactedThinkingBlockParam,
    SearchResultBlockParam,
    TextBlockParam,
    ThinkingBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)
from wisegate.protocol.messages import CountTokensRequest, CustomTool, MessagesRequest

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
TOOL_RESPONSE_SPAN = ("<tool_response>", "</tool_response>")
# Pieces of the prompt's tool instructions a small model sometimes repeats as its answer: an answer
# ends where one begins (the engine treats them as stop markers it never shows).
SCAFFOLD_ECHOES = ("You can call tools.", "To call a tool, answer with only", "You can call a tool, answer")

_MARKUP = (TOOL_CALL_OPEN, TOOL_CALL_CLOSE, *TOOL_RESPONSE_SPAN)


def defuse(text: str) -> str:
    """``text`` with the prompt's tool markup escaped (``<`` as ``&lt;``), so that a tool's output that
    prints ``</tool_response><tool_call>…`` cannot end its response early or pose as a call."""
    for marker in _MARKUP:
        text = text.replace(marker, "&lt;" + marker[1:])
    return text


_TOOLS_PREAMBLE = (
    "You can call tools. The tools are described here as JSON:\n<tools>\n{tools}\n</tools>\n"
    "To call a tool, answer with only "
    '<tool_call>{{"name": <tool name>, "arguments": <arguments as a JSON object>}}</tool_call>'
)


_FORMAT_PREAMBLE = "Answer with only a JSON value valid for this JSON schema:\n{schema}"


@dataclass(frozen=True, slots=True)
class BlockEnd:
    """Where a content block (system block, tool definition, message block) ends in the prompt text.

    ``offset`` counts characters of ``Prompt.text``; ``ttl`` is set when the block carries a cache
    breakpoint (``"5m"`` or ``"1h"``).
    """

    offset: int
    ttl: str | None


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    prefill: str
    tools: list[CustomTool]
    block_ends: tuple[BlockEnd, ...] = ()


class _Marks:
    """Sentinels placed after each block while rendering, turned into ``BlockEnd`` offsets after.

    The chat template copies message content verbatim, so a sentinel's position in the rendered text
    is exactly where its block ends. A random nonce keeps request text from forging one.
    """

    def __init__(self) -> None:
        nonce = secrets.token_hex(6)
        self._prefix = f"\ue000{nonce}:"
        self._pattern = re.compile(re.escape(self._prefix) + r"(\d+)\ue001")
        self._ttls: list[str | None] = []

    def after(self, cache_control: CacheControl | None) -> str:
        self._ttls.append((cache_control.ttl or "5m") if cache_control is not None else None)
        return f"{self._prefix}{len(self._ttls) - 1}\ue001"

    def strip(self, text: str) -> str:
        return self._pattern.sub("", text)

    def resolve(self, text: str) -> tuple[str, tuple[BlockEnd, ...]]:
        pieces: list[str] = []
        ends: list[BlockEnd] = []
        length = start = 0
        for match in self._pattern.finditer(text):
            pieces.append(text[start : match.start()])
            length += match.start() - start
            start = match.end()
            ends.append(BlockEnd(length, self._ttls[int(match.group(1))]))
        pieces.append(text[start:])
        return "".join(pieces), tuple(ends)


class PromptRenderer:
    """Turns requests into prompt text with the GGUF's own chat template."""

    def __init__(self, chat_template: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._template = env.from_string(chat_template)

    def render(self, request: MessagesRequest | CountTokensRequest, model_id: str) -> Prompt:
        """The full prompt text, ending with the assistant turn's opening (and any prefill).

        ``block_ends`` lists where every block ends, in the Claude API's cache order as far as the
        chat template allows: system blocks, then tool definitions (rendered into the system turn
        after the system text), then message blocks. The top-level ``cache_control`` puts a
        breakpoint on the last cacheable message block.
        """
        marks = _Marks()
        tools = [t for t in request.tools or [] if isinstance(t, CustomTool)]
        system = [b.text + marks.after(b.cache_control) for b in request.system_text()]
        if tools:
            entries = [
                json.dumps(
                    {
                        "name": t.name,
                        "description": t.description or "",
                        "input_schema": t.input_schema.model_dump(exclude_none=True),
                    },
                    ensure_ascii=False,
                )
                + marks.after(t.cache_control)
                for t in tools
            ]
            system.append(_TOOLS_PREAMBLE.format(tools="[" + ", ".join(entries) + "]"))
        output = request.output_config.format if request.output_config is not None else None
        if output is not None:
            # Generation is held to the schema by a grammar; saying so helps a small model fill it well.
            schema = json.dumps(output.json_schema, ensure_ascii=False)
            system.append(_FORMAT_PREAMBLE.format(schema=schema))
        auto = _auto_breakpoint(request)
        turns: list[dict[str, str]] = []
        # The model was trained with one leading system turn: ``role: "system"`` messages are hoisted
        # into it (as Anthropic's OpenAI layer hoists system messages); ``clear_at:
        # "next_user_message"`` ones only while no later user turn exists.
        last_user = max((i for i, m in enumerate(request.messages) if m.role == "user"), default=-1)
        for index, message in enumerate(request.messages):
            if message.role == "system" and not (
                message.clear_at == "next_user_message" and index < last_user
            ):
                system.append("".join(self._block_text(block, index, model_id) for block in message.blocks()))
        if system:
            turns.append({"role": "system", "content": "\n\n".join(system)})
        for index, message in enumerate(request.messages):
            if message.role == "system":
                continue
            text = "".join(
                self._block_text(block, index, model_id)
                + marks.after(request.cache_control if (index, b) == auto else _cache_control(block))
                for b, block in enumerate(message.blocks())
            )
            if turns and turns[-1]["role"] == message.role:
                turns[-1]["content"] += "\n\n" + text
            else:
                turns.append({"role": message.role, "content": text})
        prefill = ""
        if turns and turns[-1]["role"] == "assistant":
            prefill = turns.pop()["content"]
            visible = marks.strip(prefill)
            if visible != visible.rstrip():
                raise InvalidRequest("final assistant content cannot end with trailing whitespace")
        text, ends = marks.resolve(
            self._template.render(messages=turns, add_generation_prompt=True) + prefill
        )
        return Prompt(text=text, prefill=marks.strip(prefill), tools=tools, block_ends=ends)

    def _block_text(self, block: ContentBlockParam, index: int, model_id: str) -> str:
        if isinstance(block, TextBlockParam):
            return block.text
        if isinstance(block, ToolUseBlockParam):
            call = json.dumps({"name": block.name, "arguments": block.input}, ensure_ascii=False)
            return f"{TOOL_CALL_OPEN}{call}{TOOL_CALL_CLOSE}"
        if isinstance(block, ToolResultBlockParam):
            return f"<tool_response>{defuse(self._tool_result_text(block, index, model_id))}</tool_response>"
        if isinstance(block, DocumentBlockParam):
            return self._document_text(block, index, model_id)
        if isinstance(block, SearchResultBlockParam):
            body = "\n".join(b.text for b in block.content)
            attrs = f"source={json.dumps(block.source)} title={json.dumps(block.title)}"
            return f"<search_result {attrs}>\n{body}\n</search_result>"
        if isinstance(block, ImageBlockParam):
            raise InvalidRequest(f"messages.{index}.content: model '{model_id}' does not support image input")
        # Thinking blocks from earlier turns are dropped, as the Claude API does; server-tool blocks have
        # no meaning to a local model.
        return ""

    def _tool_result_text(self, block: ToolResultBlockParam, index: int, model_id: str) -> str:
        if block.content is None:
            return ""
        if isinstance(block.content, str):
            return block.content
        parts = []
        for item in block.content:
            if isinstance(item, TextBlockParam):
                parts.append(item.text)
            elif isinstance(item, DocumentBlockParam):
                parts.append(self._document_text(item, index, model_id))
            elif isinstance(item, SearchResultBlockParam):
                parts.append("\n".join(b.text for b in item.content))
            else:
                raise InvalidRequest(
                    f"messages.{index}.content: model '{model_id}' does not support image input"
                )
        return "\n".join(parts)

    def _document_text(self, block: DocumentBlockParam, index: int, model_id: str) -> str:
        source = block.source
        if isinstance(source, PlainTextSource):
            body = source.data
        elif isinstance(source, ContentSource):
            if isinstance(source.content, str):
                body = source.content
            else:
                body = "\n".join(self._block_text(b, index, model_id) for b in source.content)
        else:
            raise InvalidRequest(
                f"messages.{index}.content: model '{model_id}' accepts documents with a "
                f"'text' or 'content' source only, not '{source.type}'"
            )
        title = f" title={json.dumps(block.title, ensure_ascii=False)}" if block.title else ""
        context = f"\n{block.context}" if block.context else ""
        return f"<document{title}>{context}\n{body}\n</document>"


def _cache_control(block: ContentBlockParam) -> CacheControl | None:
    value = getattr(block, "cache_control", None)
    return value if isinstance(value, CacheControl) else None


def _auto_breakpoint(request: MessagesRequest | CountTokensRequest) -> tuple[int, int] | None:
    """(message, block) of the last cacheable block, where a top-level ``cache_control`` applies."""
    if request.cache_control is None:
        return None
    for index in range(len(request.messages) - 1, -1, -1):
        blocks = request.messages[index].blocks()
        for b in range(len(blocks) - 1, -1, -1):
            if not isinstance(blocks[b], ThinkingBlockParam | RedactedThinkingBlockParam):
                return index, b
    return None
