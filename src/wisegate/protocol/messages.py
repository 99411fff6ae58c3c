"""Wire shapes of ``POST /v1/messages`` and ``/v1/messages/count_tokens`` (anthropic 2.10.0 types).

Request models validate as the Claude API does: unknown top-level fields are rejected, content blocks
(``protocol/content.py``) are a union discriminated by ``type``. Response models are what ``Message``
serialises to.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from wisegate.protocol.bounds import (
    MAX_STOP_SEQUENCES,
    MAX_TOOLS,
    STOP_SEQUENCE_LENGTH,
    TOOL_NAME_LENGTH,
    IdText,
    ModelName,
    echo,
)
from wisegate.protocol.code_execution import (
    TOOL_NAMES,
    CodeExecutionResultBlock,
    ContainerUploadBlock,
    ServerToolUseBlock,
)
from wisegate.protocol.content import (
    CacheControl,
    DocumentBlockParam,
    ImageBlockParam,
    MessageParam,
    TextBlockParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
    _Open,
    _Strict,
)
from wisegate.protocol.numbers import Boolean, Integer, Number
from wisegate.protocol.options import BillingPolicy, CompactionConfig, FallbackCreditToken, FallbackEntry
from wisegate.protocol.structured import OutputConfig, SchemaUnsupported, check_schema
from wisegate.protocol.thinking import Thinking, ThinkingEnabled

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58 = bytes(_ALPHABET[b % 58].encode()[0] for b in range(256))
_UNEVEN = bytes(range(232, 256))
TOOL_NAME = re.compile(rf"^[a-zA-Z0-9_-]{{1,{TOOL_NAME_LENGTH}}}$")

StopSequence = Annotated[str, Field(max_length=STOP_SEQUENCE_LENGTH)]
MAX_FALLBACKS = 8  # models one request may name in ``fallbacks``
FallbackList = Annotated[list[FallbackEntry], Field(max_length=MAX_FALLBACKS)]


CONTAINER_SHAPE = (
    "container: must be a container id (a non-empty string) or an object "
    '`{"id": "<container id>", "skills": [...]}`; omit it to start a new container'
)


def new_id(prefix: str, length: int = 24) -> str:
    """An Anthropic-looking id: ``prefix`` + ``_01`` + base58 characters (e.g. ``msg_01Xf…``)."""
    need = length - 2
    global _pool, _taken
    with _pool_lock:
        if _taken + need > len(_pool):
            # Random bytes below 232 (= 4 × 58) map evenly onto the alphabet; the rest are dropped.
            # Drawn 4 KiB at a time: one getrandom() call serves ~150 ids instead of one each.
            fresh = _pool[_taken:]
            while len(fresh) < need:
                fresh += os.urandom(4096).translate(_BASE58, _UNEVEN)
            _pool, _taken = fresh, 0
        chars = _pool[_taken : _taken + need]
        _taken += need
    return f"{prefix}_01" + chars.decode()


def _forget_pool() -> None:
    """A forked child draws its own ids, never its parent's next ones (and has its own lock: another
    thread may have held the parent's at the fork)."""
    global _pool, _taken, _pool_lock
    _pool, _taken, _pool_lock = b"", 0, threading.Lock()


_pool = b""
_taken = 0
_pool_lock = threading.Lock()
os.register_at_fork(after_in_child=_forget_pool)


class InputSchema(_Open):
    type: Literal["object"]
    properties: dict[str, Any] | None = None
    required: list[str] | None = None


class CustomTool(_Open):
    name: str
    input_schema: InputSchema
    description: str | None = None
    type: Literal["custom"] | None = None
    cache_control: CacheControl | None = None
    strict: Boolean | None = None

    @field_validator("name")
    @classmethod
    def _name_pattern(cls, value: str) -> str:
        if not TOOL_NAME.match(value):
            raise ValueError(f"String should match pattern '{TOOL_NAME.pattern}'")
        return value


class ServerTool(_Open):
    """A versioned server tool (``web_search_20250305``, ``bash_20250124`` …)."""

    type: str = Field(max_length=TOOL_NAME_LENGTH)
    name: str = Field(max_length=TOOL_NAME_LENGTH)
    cache_control: CacheControl | None = None

    @field_validator("type")
    @classmethod
    def _versioned(cls, value: str) -> str:
        if not re.match(r"^[a-z_]+_\d{8}$", value):
            raise ValueError(f"unknown tool type '{echo(value)}'")
        return value


def _tool_kind(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("type")
        return "server" if kind not in (None, "custom") else "custom"
    return "server" if getattr(value, "type", None) not in (None, "custom") else "custom"


Tool = Annotated[
    Annotated[CustomTool, Tag("custom")] | Annotated[ServerTool, Tag("server")],
    Discriminator(_tool_kind),
]


class ToolChoiceAuto(_Strict):
    type: Literal["auto"]
    disable_parallel_tool_use: Boolean | None = None


class ToolChoiceAny(_Strict):
    type: Literal["any"]
    disable_parallel_tool_use: Boolean | None = None


class ToolChoiceTool(_Strict):
    type: Literal["tool"]
    name: str = Field(max_length=TOOL_NAME_LENGTH)
    disable_parallel_tool_use: Boolean | None = None


class ToolChoiceNone(_Strict):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


class Metadata(_Strict):
    user_id: str | None = Field(default=None, max_length=512)


class ThreadCreate(_Strict):
    """``thread: {"type": "create"}``: hold this conversation under the response's id."""

    type: Literal["create"]


class ThreadContinue(_Strict):
    """``thread: {"type": "continue", "previous_message_id": …}``: resume from a stored response."""

    type: Literal["continue"]
    previous_message_id: IdText = Field(min_length=1)


ThreadParam = Annotated[ThreadCreate | ThreadContinue, Field(discriminator="type")]


class _Conversation(_Strict):
    """Fields shared by Messages and count_tokens."""

    model: ModelName = Field(min_length=1)
    messages: list[MessageParam] = Field(max_length=100_000)
    system: str | list[TextBlockParam] | None = None
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    cache_control: CacheControl | None = None
    output_config: OutputConfig | None = None
    speed: Literal["standard", "fast"] | None = None
    # Beta-surface fields the SDK and Claude Code send; accepted and passed to upstreams.
    context_management: dict[str, Any] | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    container: str | dict[str, Any] | None = None
    diagnostics: dict[str, Any] | None = None
    billing_policy: BillingPolicy | None = None
    compaction: CompactionConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _output_format_alias(cls, data: Any) -> Any:
        """``output_format`` (the structured-outputs beta's name) is ``output_config.format``."""
        if not isinstance(data, dict) or "output_format" not in data:
            return data
        data = dict(data)
        legacy = data.pop("output_format")
        if legacy is None:
            return data
        config = data.get("output_config")
        if isinstance(config, dict) and config.get("format") is not None:
            raise ValueError(
                "Both output_format and output_config.format were provided. "
                "Please use only output_config.format (output_format is deprecated)."
            )
        data["output_config"] = {**(config if isinstance(config, dict) else {}), "format": legacy}
        return data

    @field_validator("container", mode="before")
    @classmethod
    def _container_shape(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str | dict):
            raise ValueError(CONTAINER_SHAPE)
        return value

    @model_validator(mode="after")
    def _check_conversation(self) -> _Conversation:
        # A thread's continue sends only the new turn: it is checked again once the stored turns
        # are restored before it (domain/threads.py).
        continued = isinstance(getattr(self, "thread", None), ThreadContinue)
        if not self.messages and not continued:
            raise ValueError("messages: at least one message is required")
        names = [t.name for t in self.tools or []]
        if len(names) != len(set(names)):
            raise ValueError("tools: Tool names must be unique.")
        _check_code_execution_names(self.tools or [])
        choice = None if continued else self.tool_choice  # a continue takes its tools from the thread
        if isinstance(choice, ToolChoiceAny | ToolChoiceTool) and not names:
            raise ValueError(
                f"tool_choice: tool_choice.type '{choice.type}' may only be specified while providing tools"
            )
        if isinstance(choice, ToolChoiceTool) and choice.name not in names:
            raise ValueError(f"tool_choice: Tool '{echo(choice.name)}' not found in provided tools")
        _check_content(self.messages, self.system)
        if not continued:
            _check_tool_results(self.messages)
        if self.billing_policy is not None and self.billing_policy.bill_to == "user_profile":
            raise ValueError(
                'billing_policy.bill_to: "user_profile" is not available for your organization: this '
                "server has no user profiles to bill. Omit billing_policy, or send "
                '"bill_to": "self", to be billed as usual.'
            )
        _check_strict_schemas(self)
        breakpoints = _count_breakpoints(self)
        if breakpoints > 4:
            raise ValueError(
                f"A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
            )
        return self

    def media(self) -> Iterator[tuple[int, ImageBlockParam | DocumentBlockParam]]:
        """Every image and document block with its message's index, also those inside tool results."""
        for index, message in enumerate(self.messages):
            if isinstance(message.content, str):  # text only (and no TextBlockParam built to say so)
                continue
            for block in message.content:
                inner = block.content if isinstance(block, ToolResultBlockParam) else [block]
                for item in inner if isinstance(inner, list) else ():
                    if isinstance(item, ImageBlockParam | DocumentBlockParam):
                        yield index, item

    def system_text(self) -> list[TextBlockParam]:
        """The top-level system prompt as text blocks."""
        if self.system is None:
            return []
        if isinstance(self.system, str):
            return [TextBlockParam(type="text", text=self.system)] if self.system else []
        return self.system


class MessagesRequest(_Conversation):
    """The body of ``POST /v1/messages``."""

    max_tokens: Integer = Field(ge=0)  # 0: fill the prompt cache, generate nothing (SDK 2.10)
    stream: Boolean | None = None
    stop_sequences: list[StopSequence] | None = Field(default=None, max_length=MAX_STOP_SEQUENCES)
    temperature: Number | None = Field(default=None, ge=0.0, le=1.0)
    top_p: Number | None = Field(default=None, ge=0.0, le=1.0)
    top_k: Integer | None = Field(default=None, ge=0)
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: str | None = None
    thread: ThreadParam | None = None
    # Each entry may run a model and recurse once: a request-controlled length is bounded up front.
    fallbacks: Annotated[list[FallbackEntry], Field(max_length=MAX_FALLBACKS)] | Literal["default"] | None = (
        None
    )
    fallback_credit_token: str | FallbackCreditToken | None = None

    @field_validator("stop_sequences")
    @classmethod
    def _stop_sequences(cls, value: list[str] | None) -> list[str] | None:
        for seq in value or []:
            if not seq.strip():
                raise ValueError("each stop sequence must contain non-whitespace")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> MessagesRequest:
        if self.compaction is not None and self.context_management is not None:
            raise ValueError("compaction: cannot be combined with context_management")
        if self.fallback_credit_token is not None and self.fallbacks is not None:
            raise ValueError("fallback_credit_token: cannot be combined with fallbacks")
        return self

    @model_validator(mode="after")
    def _check_thinking(self) -> MessagesRequest:
        if isinstance(self.thinking, ThinkingEnabled):
            if self.thinking.budget_tokens < 1024:
                raise ValueError(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
                )
            if self.thinking.budget_tokens >= self.max_tokens:
                raise ValueError(
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                    "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
                    "#max-tokens-and-context-window-size"
                )
        return self


class CountTokensRequest(_Conversation):
    """The body of ``POST /v1/messages/count_tokens``."""


class MessageTokensCount(BaseModel):
    input_tokens: int


def _check_strict_schemas(request: _Conversation) -> None:
    """Structured outputs' and strict tools' schemas stay within the subset the API supports."""
    try:
        if request.output_config is not None and request.output_config.format is not None:
            check_schema(request.output_config.format.json_schema, "output_config.format.schema")
        for index, tool in enumerate(request.tools or []):
            if isinstance(tool, CustomTool) and tool.strict:
                check_schema(tool.input_schema.model_dump(exclude_none=True), f"tools.{index}.input_schema")
    except SchemaUnsupported as exc:
        raise ValueError(str(exc)) from None


def _check_content(messages: list[MessageParam], system: str | list[TextBlockParam] | None) -> None:
    """The Claude API's rule: every message has content, except that the final assistant message (a
    prefill) may be empty; and no text block is empty (a prefill's included)."""
    for index, message in enumerate(messages):
        if not message.content and not (index == len(messages) - 1 and message.role == "assistant"):
            raise ValueError(
                f"messages.{index}.content: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        for position, block in enumerate(message.content if isinstance(message.content, list) else ()):
            if isinstance(block, TextBlockParam) and not block.text:
                raise ValueError(
                    f"messages.{index}.content.{position}.text: text content blocks must be non-empty"
                )
    for position, block in enumerate(system if isinstance(system, list) else ()):
        if not block.text:
            raise ValueError(f"system.{position}.text: text content blocks must be non-empty")


def _check_code_execution_names(tools: list[CustomTool | ServerTool]) -> None:
    """A client tool may not take the name of a tool the request's code execution tool gives the model
    (``bash_code_execution``…): the model's calls of that name would go to both."""
    taken = {name: t.type for t in tools if isinstance(t, ServerTool) for name in TOOL_NAMES.get(t.type, ())}
    for index, tool in enumerate(tools):
        if isinstance(tool, CustomTool) and tool.name in taken:
            raise ValueError(
                f"tools.{index}.custom.name: '{tool.name}' is the name of a tool of {taken[tool.name]} (the "
                "code execution tool in this request), so it cannot name a client tool; rename it"
            )


def _check_tool_results(messages: list[MessageParam]) -> None:
    previous_tool_ids: set[str] = set()
    for index, message in enumerate(messages):
        if isinstance(message.content, str):  # no tool blocks in a plain string
            if message.role != "system":
                previous_tool_ids = set()
            continue
        blocks = message.content
        results = [b for b in blocks if isinstance(b, ToolResultBlockParam)]
        unknown = [b.tool_use_id for b in results if b.tool_use_id not in previous_tool_ids]
        if unknown:
            raise ValueError(
                f"messages.{index}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{', '.join(echo(u) for u in unknown[:10])}. Each `tool_result` block must have a "
                "corresponding `tool_use` "
                "block in the previous message."
            )
        if message.role == "assistant":
            previous_tool_ids = {b.id for b in blocks if isinstance(b, ToolUseBlockParam)}
        elif message.role == "user":
            previous_tool_ids = set()


def _count_breakpoints(conv: _Conversation) -> int:
    count = sum(1 for b in conv.system_text() if b.cache_control is not None)
    count += sum(1 for t in conv.tools or [] if t.cache_control is not None)
    for message in conv.messages:
        if isinstance(message.content, list):
            count += sum(1 for b in message.content if getattr(b, "cache_control", None) is not None)
    return count


def _absent(value: object) -> bool:
    return value is None


class CacheCreation(BaseModel):
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation: CacheCreation = Field(default_factory=CacheCreation)
    server_tool_use: dict[str, int] | None = None
    service_tier: Literal["standard", "priority", "batch"] | None = "standard"
    inference_geo: str | None = None
    # Per-model (fallbacks) or per-operation (compaction) breakdown; absent on a plain answer.
    iterations: list[dict[str, Any]] | None = Field(default=None, exclude_if=_absent)
    fallback_credit: dict[str, Any] | None = Field(default=None, exclude_if=_absent)
    # Metered for code execution run by Wisegate; kept off the wire.
    code_execution_requests: int = Field(default=0, exclude=True)
    container_ms: int = Field(default=0, exclude=True)


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str
    citations: list[dict[str, Any]] | None = None


class ToolUseBlock(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class ThinkingBlock(BaseModel):
    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinkingBlock(BaseModel):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class CompactionBlock(BaseModel):
    """The summary a ``compaction`` request produced; sent back first in later requests' ``messages``."""

    type: Literal["compaction"] = "compaction"
    content: str | None = None
    encrypted_content: str | None = None


class FallbackInfo(BaseModel):
    model: str


class FallbackBlock(BaseModel):
    """Where the output of a model that declined gives way to the fallback model's."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    type: Literal["fallback"] = "fallback"
    from_: FallbackInfo = Field(alias="from")
    to: FallbackInfo
    trigger: dict[str, Any] = Field(default_factory=lambda: {"type": "refusal", "category": None})


ContentBlock = (
    TextBlock
    | ToolUseBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | CompactionBlock
    | FallbackBlock
    | ServerToolUseBlock
    | CodeExecutionResultBlock
    | ContainerUploadBlock
)

StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "compaction",
    "refusal",
    "model_context_window_exceeded",
]


class Message(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    stop_details: dict[str, Any] | None = None
    container: dict[str, Any] | None = None
    usage: Usage = Field(default_factory=Usage)
